#pragma once
// The master.yaml that `kiln create-master` writes: commented, runnable with
// the plugins shipped in this tree, and accepted by `kiln checkconfig`.

namespace kiln::cli {

inline constexpr const char* kMasterTemplate = R"yaml(# Kiln master configuration. Reference: docs/configuration.md
# Check it with `kiln checkconfig .`; document any component type with
# `kiln plugins TYPE`.

master:
  title: My Kiln          # shown on web pages and in notifications
  url: http://localhost:8010/
  db: sqlite:state.sqlite  # relative to this folder
  # plugin_paths: [./plugins]   # extra folders searched for kiln-*.so

# Workers run builds. `local` runs commands on this machine, in
# workers/<name>/ below this folder.
workers:
  - {name: local-1, type: local, max_builds: 2}

# Schedulers decide when to build. `force` lets people start builds by hand
# (kiln force, the web UI).
schedulers:
  - {name: force, type: force, builders: [hello]}

# Builders: a queue, the workers that may serve it, and the steps of a build.
builders:
  - name: hello
    workers: [local-1]
    steps:
      - {type: shell, name: greet, command: [echo, "hello from %(prop:buildername)s"]}
      - {type: shell, name: system, command: "uname -a && date", halt_on_failure: true}

# Status targets (web, mail, irc, ...) go here once their plugins are installed.
reporters: []
)yaml";

}  // namespace kiln::cli
