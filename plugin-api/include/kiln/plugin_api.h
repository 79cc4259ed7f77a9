/*
 * kiln/plugin_api.h -- the one contract between the Kiln core and its plugins.
 *
 * Pure C99. Include only this header (and, from C++, the SDK in sdk/) to write
 * a Kiln plugin. Nothing here changes meaning once released: see
 * docs/plugin-abi.md for the guide and docs/abi-changes.md for what each
 * minor version appended.
 *
 * CONVENTIONS (read these once; every declaration below follows them)
 *
 *  1. One exported symbol. A plugin library exports exactly
 *     `kiln_plugin_entry` (KILN_PLUGIN_ENTRY_SYMBOL). The host calls it once,
 *     passing its service table and its ABI version; the plugin returns a
 *     static descriptor of the components it provides, or NULL to refuse.
 *
 *  2. Versions. KILN_ABI_VERSION = (major << 16) | minor. The host loads a
 *     plugin iff the majors are equal. Minors may differ in either direction:
 *     every reader looks only at the fields inside the struct_size it was
 *     given (KILN_HAS), so an older plugin on a newer host and a newer plugin
 *     on an older host both work.
 *
 *  3. Growth. Every struct that crosses the boundary starts with
 *     `uint32_t struct_size`. Fields and function pointers are only ever
 *     appended, never reordered or removed. A field the other side did not
 *     know about reads as zero/NULL.
 *
 *  4. Strings. `kiln_str` is a borrowed pointer + length in UTF-8, not
 *     necessarily NUL-terminated, valid only for the duration of the call it
 *     is passed to. Whoever receives it copies what it keeps. `const char *`
 *     fields of descriptors are NUL-terminated and live as long as the library.
 *
 *  5. Structured data crosses as UTF-8 JSON text (configuration, changes,
 *     properties, data-API results, events). Bulk bytes (log output, file
 *     contents) cross as pointer + length.
 *
 *  6. Ownership. Nobody frees memory allocated by the other side. Plugin
 *     instances (`void *instance`) belong to the plugin and are released only
 *     through the component's `destroy`. Host handles (`kiln_ctx *`) belong to
 *     the host and stay valid until `destroy` of the instance they were given
 *     to has returned.
 *
 *  7. Errors. Fallible calls return kiln_status. Calls that take a
 *     `kiln_error *` expect the plugin to describe any failure with
 *     host->error_set() before returning non-OK. No C++ exception, longjmp or
 *     abort() may cross the boundary in either direction; the SDK catches
 *     everything at the edge.
 *
 *  8. Threading. The engine runs one event loop. Every call INTO a plugin
 *     (component functions, vtables, callbacks) comes on that loop thread
 *     unless its comment says otherwise, and must not block it: a plugin that
 *     waits for I/O uses host timers and commands or its own thread.
 *     Every host function may be called from any thread: when called off the
 *     loop, the host hands the work to the loop (functions returning a value
 *     synchronously then wait for the loop; never call those while the loop
 *     is waiting on you). Callbacks that a host function takes are always
 *     invoked on the loop thread, exactly once when the function returned
 *     KILN_OK (unless stated otherwise), and never when it returned an
 *     error: then the return value is the whole answer.
 *     Host functions that take a `kiln_error *err` accept NULL for it.
 *
 *  9. Results are Buildbot's: SUCCESS 0, WARNINGS 1, FAILURE 2, SKIPPED 3,
 *     EXCEPTION 4, RETRY 5, CANCELLED 6.
 */
#ifndef KILN_PLUGIN_API_H
#define KILN_PLUGIN_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Versions and the entry symbol                                             */
/* ------------------------------------------------------------------------ */

#define KILN_ABI_MAJOR 1u /* bumped only by a breaking change */
#define KILN_ABI_MINOR 2u /* bumped by every release that appends */
#define KILN_ABI_VERSION ((uint32_t)((KILN_ABI_MAJOR << 16) | KILN_ABI_MINOR))
#define KILN_ABI_VERSION_MAJOR(v) ((uint32_t)(v) >> 16)
#define KILN_ABI_VERSION_MINOR(v) ((uint32_t)(v)&0xFFFFu)

/* "KLN1": the first field of kiln_plugin_desc, guards against a library
 * that exports a symbol of the same name but is no Kiln plugin. */
#define KILN_PLUGIN_MAGIC 0x4B4C4E31u

#define KILN_PLUGIN_ENTRY_SYMBOL "kiln_plugin_entry"

#if defined(_WIN32)
#define KILN_EXPORT __declspec(dllexport)
#else
#define KILN_EXPORT __attribute__((visibility("default")))
#endif

/* True when struct *s, whose first field is its struct_size, is large enough
 * to hold field f and f is set. Use it before reading any field that was
 * appended after the minor version you build against, and for every function
 * pointer of the other side. */
#define KILN_HAS(T, s, f)                                                      \
  ((s) != NULL && (s)->struct_size >= offsetof(T, f) + sizeof(((T *)0)->f) && \
   (s)->f)

/* ------------------------------------------------------------------------ */
/* Basic types                                                               */
/* ------------------------------------------------------------------------ */

/* Borrowed UTF-8 text; not necessarily NUL-terminated. OWNERSHIP: the
 * caller's, for the duration of the call. */
typedef struct kiln_str {
  const char *ptr;
  size_t len;
} kiln_str;

/* Borrowed bytes. OWNERSHIP: the caller's, for the duration of the call. */
typedef struct kiln_bytes {
  const uint8_t *ptr;
  size_t len;
} kiln_bytes;

typedef enum kiln_status {
  KILN_OK = 0,
  KILN_ERR_INVALID_CONFIG = 1, /* configuration rejected; message says where */
  KILN_ERR_INVALID_ARGUMENT = 2,
  KILN_ERR_UNSUPPORTED = 3,    /* this host or plugin does not offer that */
  KILN_ERR_NOT_FOUND = 4,
  KILN_ERR_RETRY = 5,          /* transient: the host decides when to retry */
  KILN_ERR_REFUSED = 6,        /* the plugin declines (e.g. entry refuses) */
  KILN_ERR_CANCELLED = 7,
  KILN_ERR_INTERNAL = 8        /* a bug or an exception caught at the edge */
} kiln_status;

typedef enum kiln_result {
  KILN_SUCCESS = 0,
  KILN_WARNINGS = 1,
  KILN_FAILURE = 2,
  KILN_SKIPPED = 3,
  KILN_EXCEPTION = 4,
  KILN_RETRY = 5,
  KILN_CANCELLED = 6
} kiln_result;

typedef enum kiln_log_level {
  KILN_LOG_TRACE = 0,
  KILN_LOG_DEBUG = 1,
  KILN_LOG_INFO = 2,
  KILN_LOG_WARN = 3,
  KILN_LOG_ERROR = 4
} kiln_log_level;

typedef enum kiln_component_kind {
  KILN_KIND_CHANGE_SOURCE = 1,
  KILN_KIND_SCHEDULER = 2,
  KILN_KIND_STEP = 3,
  KILN_KIND_WORKER = 4,
  KILN_KIND_REPORTER = 5,
  KILN_KIND_POLICY = 6
} kiln_component_kind;

/* Channels of a stdio log, as in Buildbot. */
typedef enum kiln_stream {
  KILN_STREAM_STDOUT = 0,
  KILN_STREAM_STDERR = 1,
  KILN_STREAM_HEADER = 2
} kiln_stream;

/* Log types, as Buildbot's `type` field of a log. */
#define KILN_LOG_TYPE_STDIO 's'
#define KILN_LOG_TYPE_TEXT 't'
#define KILN_LOG_TYPE_HTML 'h'

/* Host handle for one component instance (one change source, one scheduler,
 * one worker, one reporter, one policy, or ONE RUN of a step in a build).
 * OWNERSHIP: host; valid from the create() call until destroy() returns. */
typedef struct kiln_ctx kiln_ctx;

/* Host-owned error slot filled with host->error_set(). */
typedef struct kiln_error kiln_error;

/* Callback shapes used by host services. `user` is handed back unchanged. */
typedef void (*kiln_fn)(void *user);
/* Delivers a status and a JSON text (empty when status != KILN_OK, in which
 * case `json` holds the error message instead). */
typedef void (*kiln_json_cb)(void *user, kiln_status status, kiln_str json);
/* Delivers text produced by a synchronous call (valid during the callback). */
typedef void (*kiln_text_cb)(void *user, kiln_str text);

/* ------------------------------------------------------------------------ */
/* Worker commands, seen from a step (host -> step)                          */
/* ------------------------------------------------------------------------ */

/* Handlers for one remote command started by a step with
 * host->command_start(). All are called on the loop thread. */
typedef struct kiln_command_handlers {
  uint32_t struct_size;
  /* Output as it arrives: stdout/stderr/header bytes. May be NULL. */
  void (*on_output)(void *user, kiln_stream stream, kiln_bytes data);
  /* Any other update the worker sends, as a JSON object such as
   * {"stat": [...]}, {"files": [...]}, {"elapsed": 1.2}, {"log": {"name":
   * "junit.xml", "data": "..."}}. May be NULL. */
  void (*on_update)(void *user, kiln_str update_json);
  /* Exactly once, last: {"rc": 0} or {"rc": -1, "failure": "why"} when the
   * command could not run or the worker was lost (then "lost": true). */
  void (*on_complete)(void *user, kiln_str result_json);
} kiln_command_handlers;

/* ------------------------------------------------------------------------ */
/* Host services                                                             */
/* ------------------------------------------------------------------------ */

/* The host's service table, handed to kiln_plugin_entry. APPEND ONLY.
 * OWNERSHIP: host; valid while the library is loaded. Check every function
 * pointer with KILN_HAS(kiln_host_api, host, fn) before calling one that was
 * appended after KILN_ABI_MINOR 0. Functions documented "not yet" return
 * KILN_ERR_UNSUPPORTED on hosts that do not offer them. */
typedef struct kiln_host_api {
  uint32_t struct_size;
  uint32_t abi_version;

  /* --- basics (any component) ------------------------------------------ */

  /* Logs one message under the component's name. ctx may be NULL (from
   * kiln_plugin_entry or a plugin thread with no instance). */
  void (*log)(kiln_ctx *ctx, kiln_log_level level, kiln_str message);

  /* Describes why a call fails; the host copies the message. */
  void (*error_set)(kiln_error *err, kiln_status status, kiln_str message);

  /* Optional or experimental services by name; NULL when absent. The name
   * space is "kiln.<area>.<function>". */
  void *(*get_proc)(const char *name);

  /* Milliseconds since the Unix epoch on the master's clock. Tests inject
   * this clock, so plugins must use it rather than the system time for
   * anything that schedules work. */
  uint64_t (*now_ms)(kiln_ctx *ctx);

  /* Runs fn(user) on the loop thread, soon, exactly once -- even when the
   * instance behind ctx has been destroyed meanwhile (fn must then not
   * touch it; it may still free what `user` points to). The way back from
   * a plugin's own thread. */
  kiln_status (*post)(kiln_ctx *ctx, kiln_fn fn, void *user);

  /* Runs fn(user) on the loop after delay_ms on the master's clock, then
   * every interval_ms if interval_ms > 0. *timer_id identifies it. */
  kiln_status (*timer_start)(kiln_ctx *ctx, uint64_t delay_ms,
                             uint64_t interval_ms, kiln_fn fn, void *user,
                             uint64_t *timer_id);
  /* Cancels a timer; fn will not run after this returns (on the loop).
   * Timers of an instance are cancelled by the host when it is destroyed. */
  kiln_status (*timer_cancel)(kiln_ctx *ctx, uint64_t timer_id);

  /* Per-instance persistent state, a JSON value per key, kept in the store
   * under (component kind, name, key). state_get delivers "null" for an
   * unknown key. */
  kiln_status (*state_get)(kiln_ctx *ctx, kiln_str key, kiln_json_cb cb,
                           void *user);
  kiln_status (*state_put)(kiln_ctx *ctx, kiln_str key, kiln_str value_json,
                           kiln_json_cb cb /* may be NULL */, void *user);

  /* Renders Buildbot Interpolate syntax (%(prop:x)s, %(src:cb:branch)s,
   * %(worker:name)s, %(kw:..)s, %(secret:..)s) in `text` using the
   * properties visible to ctx (a step's build, or the master's). The result
   * goes to out() before this returns. */
  kiln_status (*render)(kiln_ctx *ctx, kiln_str text, kiln_text_cb out,
                        void *out_user, kiln_error *err);

  /* --- data API and events --------------------------------------------- */

  /* Reads a Buildbot data-API path ("builders", "builds/12/steps", ...).
   * query_json: {"filters": [["complete","eq",[false]]], "fields": [...],
   * "order": ["-buildid"], "limit": 50, "offset": 0} or "" for none.
   * Since 1.1 also "query_string": "limit=5&complete=false&number__gt=3"
   * (a REST query, for the keys the JSON does not give; a malformed one is
   * KILN_ERR_INVALID_ARGUMENT naming the parameter) and "count": true (a
   * collection then answers {"total": N}, its size without limit/offset).
   * cb gets a JSON object or array, as Buildbot's REST API returns it. */
  kiln_status (*data_get)(kiln_ctx *ctx, kiln_str path, kiln_str query_json,
                          kiln_json_cb cb, void *user);

  /* Performs a control action on a data-API path (Buildbot JSON-RPC names:
   * "force", "stop", "rebuild", "cancel", ...). cb gets the action's result
   * JSON. */
  kiln_status (*data_control)(kiln_ctx *ctx, kiln_str path, kiln_str action,
                              kiln_str args_json, kiln_json_cb cb, void *user);

  /* Subscribes to events whose routing key matches `pattern`, a
   * '/'-separated key where "+" matches one segment and a trailing "#" the
   * rest ("builds/+/finished", "logs/42/append", "changes/#"). on_event
   * gets the routing key and the event JSON. *sub_id identifies the
   * subscription; the host drops an instance's subscriptions on destroy. */
  kiln_status (*subscribe)(kiln_ctx *ctx, kiln_str pattern,
                           void (*on_event)(void *user, kiln_str routing_key,
                                            kiln_str event_json),
                           void *user, uint64_t *sub_id);
  kiln_status (*unsubscribe)(kiln_ctx *ctx, uint64_t sub_id);

  /* --- change sources and schedulers ----------------------------------- */

  /* Adds a change. change_json: {"author", "committer", "files": [...],
   * "comments", "project", "repository", "revision", "branch", "category",
   * "codebase", "properties": {name: value}, "revlink", "when_timestamp"}.
   * cb gets {"changeid": N}. */
  kiln_status (*change_add)(kiln_ctx *ctx, kiln_str change_json,
                            kiln_json_cb cb /* may be NULL */, void *user);

  /* Submits a buildset. request_json: {"builders": [...], "reason",
   * "sourcestamps": [{"codebase", "repository", "branch", "revision",
   * "project", "changeids": [...], "patch": {"level", "body", "subdir",
   * "author", "comment"}}], "properties": {name: value}, "external_idstring",
   * "parent_buildid", "waited_for": bool}. cb gets {"bsid": N,
   * "brids": {builder name: request id}}. */
  kiln_status (*buildset_add)(kiln_ctx *ctx, kiln_str request_json,
                              kiln_json_cb cb /* may be NULL */, void *user);

  /* --- steps (ctx is one run of a step) -------------------------------- */

  /* The value of a build property as JSON ("null" when absent) and its
   * source: out() receives {"value": V, "source": "S"} or "null". */
  kiln_status (*property_get)(kiln_ctx *ctx, kiln_str name, kiln_text_cb out,
                              void *out_user);
  /* Sets a build property from this step (source defaults to the step). */
  kiln_status (*property_set)(kiln_ctx *ctx, kiln_str name,
                              kiln_str value_json, kiln_str source);

  /* Starts a worker command on the build's worker with Buildbot's
   * step-level names and arguments: "shell" {command, workdir, env,
   * timeout, maxTime, ...}, "stat" {file}, "glob" {path}, "listdir" {dir},
   * "mkdir"/"rmdir" {dir}, "rmfile" {path}, "cpdir" {fromdir, todir},
   * "uploadFile"/"uploadDirectory" {workersrc, masterdest, ...},
   * "downloadFile" {mastersrc, workerdest, ...}. Worker-side paths are
   * relative to the build's folder (and may not leave it); master-side
   * ones relative to the master folder. The host turns them into the wire
   * form (reference: Buildbot's msgpack protocol) and moves transfer bytes
   * itself. Handlers are copied; *command_id identifies the command. */
  kiln_status (*command_start)(kiln_ctx *ctx, kiln_str command_name,
                               kiln_str args_json,
                               const kiln_command_handlers *handlers,
                               void *user, uint64_t *command_id);
  /* Asks the worker to interrupt a running command; on_complete follows. */
  kiln_status (*command_interrupt)(kiln_ctx *ctx, uint64_t command_id,
                                   kiln_str reason);

  /* Adds a log to the step; type is KILN_LOG_TYPE_*. */
  kiln_status (*log_add)(kiln_ctx *ctx, kiln_str name, char type,
                         uint64_t *log_id);
  /* Appends to a log (stream is ignored for text and HTML logs). The host
   * streams it to the store in chunks; nothing is held whole. */
  kiln_status (*log_append)(kiln_ctx *ctx, uint64_t log_id, kiln_stream stream,
                            kiln_bytes data);
  kiln_status (*log_finish)(kiln_ctx *ctx, uint64_t log_id);

  /* The step's one-line state ("compiling", "3 tests failed"). */
  kiln_status (*set_summary)(kiln_ctx *ctx, kiln_str summary);
  kiln_status (*add_url)(kiln_ctx *ctx, kiln_str name, kiln_str url);
  /* A named statistic of the step (JSON number or value). */
  kiln_status (*set_statistic)(kiln_ctx *ctx, kiln_str name,
                               kiln_str value_json);
  /* Progress for ETA estimates: metric ("output", "tests") and value. */
  kiln_status (*set_progress)(kiln_ctx *ctx, kiln_str metric, double value);
  /* Appends steps (a JSON array of step configs, as in master.yaml) to the
   * build after this one. */
  kiln_status (*add_steps)(kiln_ctx *ctx, kiln_str steps_json,
                           kiln_error *err);
  /* Ends this step run. Exactly once; the host then destroys the instance. */
  kiln_status (*step_finish)(kiln_ctx *ctx, kiln_result result,
                             kiln_str summary);

  /* --- workers (ctx is one configured worker) -------------------------- */

  /* The worker is ready for builds. info_json: {"admin", "host",
   * "version", "os", "environ": {...}, "basedir", "numcpus",
   * "worker_commands": {...}}. */
  kiln_status (*worker_connected)(kiln_ctx *ctx, kiln_str info_json);
  /* The worker is gone; its running commands complete as lost. */
  kiln_status (*worker_disconnected)(kiln_ctx *ctx, kiln_str reason);
  /* Progress of a command the host started with kiln_worker_vtable.
   * command_start: output bytes, other updates, and completion
   * ({"rc": N} or {"rc": -1, "failure": "why"}). */
  kiln_status (*command_output)(kiln_ctx *ctx, uint64_t command_id,
                                kiln_stream stream, kiln_bytes data);
  kiln_status (*command_update)(kiln_ctx *ctx, uint64_t command_id,
                                kiln_str update_json);
  kiln_status (*command_complete)(kiln_ctx *ctx, uint64_t command_id,
                                  kiln_str result_json);
  /* File transfers of a command: bytes from the worker (uploads) are
   * written by the host to the command's master-side destination; bytes to
   * the worker (downloads) are read from its master-side source. read
   * delivers at most max_len bytes to out() before returning; an empty
   * delivery means end of file. */
  kiln_status (*transfer_write)(kiln_ctx *ctx, uint64_t command_id,
                                kiln_bytes data);
  kiln_status (*transfer_read)(kiln_ctx *ctx, uint64_t command_id,
                               size_t max_len,
                               void (*out)(void *user, kiln_bytes data),
                               void *out_user);

  /* --- any component ---------------------------------------------------- */

  /* Facts about the instance behind ctx, as a JSON object delivered to
   * out() before this returns:
   *   {"kind": "worker", "name": "local-1", "master_dir": "/srv/ci",
   *    "master_title": "Example CI", "common": {...}}
   * "common" holds the keys of the component's master.yaml entry that the
   * core owns (a scheduler's "builders" and "properties", a worker's
   * "max_builds", a step's "timeout", "env", "workdir", "decode_rc", ...),
   * with defaults filled in and, for steps, rendered. A step run adds
   * "builder", "buildid", "build_number" and "step_number". Readers ignore
   * keys they do not know. */
  kiln_status (*context_info)(kiln_ctx *ctx, kiln_text_cb out, void *out_user);

  /* --- 1.1 ---------------------------------------------------------------- */

  /* Calls the named policy function (a `policies:` entry of master.yaml,
   * or a built-in policy type name) with args_json and delivers its JSON
   * answer to out() before this returns. Policies are pure and fast, so
   * this is synchronous; call it from the loop thread. KILN_ERR_NOT_FOUND
   * when no policy has that name. Used for the user-replaceable decisions
   * of plugins: an SVN poller's split_file, a scheduler's
   * file_is_important, a notifier's address lookup. */
  kiln_status (*policy_call)(kiln_ctx *ctx, kiln_str policy_name,
                             kiln_str args_json, kiln_text_cb out,
                             void *out_user, kiln_error *err);

  /* --- 1.2 ---------------------------------------------------------------- */

  /* Worker contexts, any thread. Flow control for command output: when the
   * master is behind storing the output it was given (a step writes faster
   * than the store commits), returns KILN_ERR_RETRY and calls resume(user)
   * on the loop once it has caught up; otherwise returns KILN_OK and never
   * calls resume. A worker that can pause its source (a pipe, a socket)
   * asks before taking more output from it, so the master's memory stays
   * flat however fast a step writes. Output given while behind is still
   * accepted. Contexts of other kinds always answer KILN_OK. */
  kiln_status (*output_throttle)(kiln_ctx *ctx, kiln_fn resume, void *user);
} kiln_host_api;

/* ------------------------------------------------------------------------ */
/* Component vtables (plugin -> host). Each begins with struct_size; the    */
/* host checks each function with KILN_HAS before calling it.               */
/* ------------------------------------------------------------------------ */

/* Change source: notices changes and calls host->change_add. */
typedef struct kiln_change_source_vtable {
  uint32_t struct_size;
  kiln_status (*start)(void *instance, kiln_error *err);
  void (*stop)(void *instance);
  /* Optional: poll now (the "poll" control action). */
  kiln_status (*poll)(void *instance, kiln_error *err);
} kiln_change_source_vtable;

/* Scheduler: turns changes and triggers into buildsets. */
typedef struct kiln_scheduler_vtable {
  uint32_t struct_size;
  kiln_status (*start)(void *instance, kiln_error *err);
  void (*stop)(void *instance);
  /* Every new change, as the JSON the data API shows for it (with
   * "changeid"). Optional. */
  void (*on_change)(void *instance, kiln_str change_json);
  /* Control actions addressed to the scheduler ("force" from the web or
   * CLI, "trigger" from a trigger step). cb gets the result JSON, e.g.
   * {"bsid": N}. Optional. */
  kiln_status (*control)(void *instance, kiln_str action, kiln_str args_json,
                         kiln_json_cb cb, void *user);
} kiln_scheduler_vtable;

/* Step: one run of a step in a build. create() gets the step's config with
 * renderables already rendered; run() starts it; the step finishes with
 * host->step_finish. */
typedef struct kiln_step_vtable {
  uint32_t struct_size;
  kiln_status (*run)(void *instance, kiln_error *err);
  /* The build is being stopped; the step should interrupt its command and
   * finish (normally CANCELLED). Optional. */
  void (*interrupt)(void *instance, kiln_str reason);
} kiln_step_vtable;

/* Worker: one configured worker of this type; runs commands for builds. */
typedef struct kiln_worker_vtable {
  uint32_t struct_size;
  /* Begin accepting the worker (listen, connect, or be ready at once as a
   * local worker does, calling host->worker_connected). */
  kiln_status (*start)(void *instance, kiln_error *err);
  void (*stop)(void *instance);
  /* Runs a command (names and args as kiln_host_api.command_start, with
   * paths made absolute by the host). Progress goes to
   * host->command_output/update/complete with the same command_id. */
  kiln_status (*command_start)(void *instance, uint64_t command_id,
                               kiln_str command_name, kiln_str args_json,
                               kiln_error *err);
  kiln_status (*command_interrupt)(void *instance, uint64_t command_id,
                                   kiln_str reason);
  /* Latent workers: start the machine for a build (build_json has the
   * build's properties); done(user, status, message) when it connected or
   * failed. NULL for workers that are always there. */
  kiln_status (*substantiate)(void *instance, kiln_str build_json,
                              kiln_json_cb done, void *user);
  /* Stop the machine; done when it is down. */
  kiln_status (*insubstantiate)(void *instance, kiln_json_cb done,
                                void *user);
  /* Control actions: "ping", "graceful_shutdown". Optional. */
  kiln_status (*control)(void *instance, kiln_str action, kiln_str args_json,
                         kiln_json_cb cb, void *user);
} kiln_worker_vtable;

/* Reporter (status target): subscribes to events with host->subscribe in
 * start() and reads with host->data_get. */
typedef struct kiln_reporter_vtable {
  uint32_t struct_size;
  kiln_status (*start)(void *instance, kiln_error *err);
  void (*stop)(void *instance);
} kiln_reporter_vtable;

/* Named policy function. `policy` names which hook it can fill:
 * "collapse_requests", "prioritize_builders", "next_worker", "next_build",
 * "can_start_build", "file_is_important", "split_file",
 * "message_formatter", "authz_check", "email_lookup". Argument and result
 * JSON per hook are listed in docs/plugin-abi.md. call() answers before it
 * returns, through out(). */
typedef struct kiln_policy_vtable {
  uint32_t struct_size;
  const char *policy;
  kiln_status (*call)(void *instance, kiln_str args_json, kiln_text_cb out,
                      void *out_user, kiln_error *err);
} kiln_policy_vtable;

/* ------------------------------------------------------------------------ */
/* Descriptors                                                               */
/* ------------------------------------------------------------------------ */

/* One component type a plugin provides. OWNERSHIP: plugin, static, valid
 * while the library is loaded. */
typedef struct kiln_component_desc {
  uint32_t struct_size;
  uint32_t kind;          /* kiln_component_kind */
  const char *type_name;  /* the YAML `type:` value, e.g. "git-poller" */
  const char *version;    /* the component's own version, e.g. "1.2.0" */
  const char *summary;    /* one line for `kiln plugins` */
  /* JSON Schema (draft-07 subset: type, properties, required,
   * additionalProperties, items, enum, default, description, minimum,
   * maximum, minLength, pattern) of the component's configuration, without
   * the keys the core owns (type, name, and the kind's common keys). The
   * core validates every config against it before calling anything. */
  const char *config_schema;
  /* Optional extra checks beyond the schema. Pure: no side effects. */
  kiln_status (*validate)(kiln_str config_json, kiln_error *err);
  /* Makes an instance from a validated config (defaults filled in). ctx is
   * the host handle for this instance. */
  kiln_status (*create)(kiln_ctx *ctx, kiln_str config_json,
                        void **out_instance, kiln_error *err);
  /* Optional: apply a changed config in place. NULL means the host
   * destroys and re-creates the instance. */
  kiln_status (*reconfigure)(void *instance, kiln_str config_json,
                             kiln_error *err);
  /* Releases the instance (after stop, for kinds that have one). */
  void (*destroy)(void *instance);
  /* The kind's vtable: kiln_change_source_vtable, kiln_scheduler_vtable,
   * kiln_step_vtable, kiln_worker_vtable, kiln_reporter_vtable or
   * kiln_policy_vtable. */
  const void *vtable;
} kiln_component_desc;

/* What kiln_plugin_entry returns. OWNERSHIP: plugin, static. */
typedef struct kiln_plugin_desc {
  uint32_t magic;        /* KILN_PLUGIN_MAGIC */
  uint32_t struct_size;  /* sizeof(kiln_plugin_desc) as the plugin knew it */
  uint32_t abi_version;  /* KILN_ABI_VERSION the plugin was built against */
  const char *name;      /* e.g. "kiln-git" */
  const char *version;
  const char *description;
  const char *license;
  uint32_t component_count;
  const kiln_component_desc *const *components;
  /* Optional; called once before the library is unloaded, after every
   * instance is destroyed. */
  void (*shutdown)(void);
} kiln_plugin_desc;

/* Smallest descriptor a host accepts (everything up to `components`). */
#define KILN_PLUGIN_DESC_MIN_SIZE                                              \
  (offsetof(kiln_plugin_desc, components) + sizeof(const void *))
#define KILN_COMPONENT_DESC_MIN_SIZE                                           \
  (offsetof(kiln_component_desc, destroy) + sizeof(void (*)(void *)))

/* The entry point every plugin exports. Return the descriptor, or NULL to
 * refuse to load after describing why with host->error_set(err, ...). */
typedef const kiln_plugin_desc *(*kiln_plugin_entry_fn)(
    const kiln_host_api *host, uint32_t host_abi_version, kiln_error *err);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KILN_PLUGIN_API_H */
