/* A plugin built against a newer minor of ABI 1 than this host speaks: its
 * descriptors and vtables have fields appended that the host has never
 * heard of, and it looks for a host service this host does not have. It
 * declares its own copies of the structs, as its newer header would. */
#include <kiln/plugin_api.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUTURE_ABI_VERSION ((uint32_t)((1u << 16) | 77u))

/* kiln_host_api as of 1.77: one more service at the end. */
typedef struct future_host_api {
  kiln_host_api v1_0;
  kiln_status (*teleport)(kiln_ctx *ctx, kiln_str where);
} future_host_api;

typedef struct future_component_desc {
  uint32_t struct_size;
  uint32_t kind;
  const char *type_name;
  const char *version;
  const char *summary;
  const char *config_schema;
  kiln_status (*validate)(kiln_str config_json, kiln_error *err);
  kiln_status (*create)(kiln_ctx *ctx, kiln_str config_json,
                        void **out_instance, kiln_error *err);
  kiln_status (*reconfigure)(void *instance, kiln_str config_json,
                             kiln_error *err);
  void (*destroy)(void *instance);
  const void *vtable;
  /* appended in 1.77 */
  const char *stability;
  uint64_t flags;
} future_component_desc;

typedef struct future_plugin_desc {
  uint32_t magic;
  uint32_t struct_size;
  uint32_t abi_version;
  const char *name;
  const char *version;
  const char *description;
  const char *license;
  uint32_t component_count;
  const future_component_desc *const *components;
  void (*shutdown)(void);
  /* appended in 1.77 */
  const char *homepage;
  uint32_t flags;
} future_plugin_desc;

typedef struct future_policy_vtable {
  uint32_t struct_size;
  const char *policy;
  kiln_status (*call)(void *instance, kiln_str args_json, kiln_text_cb out,
                      void *out_user, kiln_error *err);
  /* appended in 1.77 */
  kiln_status (*explain)(void *instance, kiln_text_cb out, void *out_user);
} future_policy_vtable;

static const kiln_host_api *host;
static int host_has_teleport = -1;

static kiln_str str(const char *s) {
  kiln_str out;
  out.ptr = s;
  out.len = strlen(s);
  return out;
}

static kiln_status create(kiln_ctx *ctx, kiln_str config_json,
                          void **out_instance, kiln_error *err) {
  (void)ctx;
  (void)config_json;
  (void)err;
  *out_instance = malloc(16);
  return *out_instance ? KILN_OK : KILN_ERR_INTERNAL;
}

static void destroy(void *instance) { free(instance); }

static kiln_status call(void *instance, kiln_str args_json, kiln_text_cb out,
                        void *out_user, kiln_error *err) {
  char buf[64];
  (void)instance;
  (void)args_json;
  (void)err;
  snprintf(buf, sizeof buf, "{\"host_has_teleport\": %s}",
           host_has_teleport ? "true" : "false");
  out(out_user, str(buf));
  return KILN_OK;
}

static kiln_status explain(void *instance, kiln_text_cb out, void *out_user) {
  (void)instance;
  out(out_user, str("never called by a 1.0 host"));
  return KILN_OK;
}

static const future_policy_vtable policy_vtable = {
    sizeof(future_policy_vtable), "next_build", call, explain};

static const future_component_desc policy = {
    sizeof(future_component_desc), KILN_KIND_POLICY, "future-policy", "9.9",
    "from the future",
    "{\"type\": \"object\", \"properties\": {\"depth\": {\"type\": \"integer\"}}}",
    NULL, create, NULL, destroy, &policy_vtable, "alpha", 0xFFFFFFFFFFFFFFFFull};

static const future_component_desc *const components[] = {&policy};

static const future_plugin_desc plugin = {
    KILN_PLUGIN_MAGIC, sizeof(future_plugin_desc), FUTURE_ABI_VERSION,
    "kiln-test-future", "9.9.9", "built against ABI 1.77", "MIT",
    1, components, NULL, "https://example.org/future", 7};

KILN_EXPORT const kiln_plugin_desc *kiln_plugin_entry(
    const kiln_host_api *host_api, uint32_t host_abi_version, kiln_error *err) {
  (void)err;
  if (KILN_ABI_VERSION_MAJOR(host_abi_version) != 1) return NULL;
  host = host_api;
  /* The newer service is used only when the host's table is big enough to
   * hold it: a 1.0 host's is not. */
  host_has_teleport =
      host->struct_size >= offsetof(future_host_api, teleport) +
                               sizeof(((future_host_api *)0)->teleport) &&
      ((const future_host_api *)host)->teleport != NULL;
  return (const kiln_plugin_desc *)&plugin;
}
