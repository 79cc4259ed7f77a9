# kiln_add_plugin(<target> SOURCES <files...>
#                 [LIBRARIES <libs...>]
#                 [OUTPUT_DIRECTORY <dir>]
#                 [INSTALL_DESTINATION <dir> | NO_INSTALL])
#
# Builds a Kiln plugin library: a MODULE named kiln-<target>.so, linked
# against the ABI header and the C++ SDK, that exports kiln_plugin_entry and
# nothing else (hidden visibility plus a linker version script) and that has
# no undefined symbols left for the host to provide: plugins reach the core
# only through the host table.
#
# The same function serves in-tree plugins and out-of-tree ones that use
# find_package(Kiln). Where the library goes:
#   build:   OUTPUT_DIRECTORY, else ${KILN_BUILD_PLUGIN_DIR} (in the Kiln
#            tree), else CMake's default (the current binary folder).
#   install: INSTALL_DESTINATION, else ${KILN_INSTALL_PLUGIN_DIR} (relative to
#            the install prefix: lib/kiln/plugins). Nothing is installed with
#            NO_INSTALL, nor for a library given its own OUTPUT_DIRECTORY but
#            no INSTALL_DESTINATION (test fakes).
function(kiln_add_plugin target)
  cmake_parse_arguments(ARG "NO_INSTALL" "OUTPUT_DIRECTORY;INSTALL_DESTINATION" "SOURCES;LIBRARIES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "kiln_add_plugin(${target}): no SOURCES")
  endif()
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE Kiln::sdk ${ARG_LIBRARIES})
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME "kiln-${target}"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)

  if(CMAKE_SYSTEM_NAME STREQUAL "Linux" OR CMAKE_SYSTEM_NAME MATCHES "BSD")
    set(map "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/kiln_plugin.map")
    target_link_options(${target} PRIVATE "LINKER:--version-script=${map}")
    set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS "${map}")
    # Sanitizer runtimes leave their symbols for the executable to provide.
    if(NOT CMAKE_CXX_FLAGS MATCHES "sanitize" AND NOT CMAKE_C_FLAGS MATCHES "sanitize")
      target_link_options(${target} PRIVATE "LINKER:-z,defs")
    endif()
  endif()

  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  elseif(DEFINED KILN_BUILD_PLUGIN_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${KILN_BUILD_PLUGIN_DIR})
  endif()

  if(ARG_INSTALL_DESTINATION)
    install(TARGETS ${target} LIBRARY DESTINATION ${ARG_INSTALL_DESTINATION})
  elseif(NOT ARG_NO_INSTALL AND NOT ARG_OUTPUT_DIRECTORY AND DEFINED KILN_INSTALL_PLUGIN_DIR)
    install(TARGETS ${target} LIBRARY DESTINATION ${KILN_INSTALL_PLUGIN_DIR})
  endif()

  # In Kiln's own tree every plugin joins `kiln_all_plugins`, which the test
  # binaries depend on (they load the built libraries at run time).
  if(TARGET kiln_all_plugins)
    add_dependencies(kiln_all_plugins ${target})
  endif()
endfunction()
