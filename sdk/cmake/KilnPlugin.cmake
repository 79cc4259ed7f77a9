# kiln_add_plugin(<target> SOURCES <files...> [LIBRARIES <libs...>])
#
# Builds a Kiln plugin library: a MODULE named kiln-<target>.so with only the
# entry symbol exported, linked against the ABI header and the C++ SDK. The
# same function serves in-tree plugins and out-of-tree ones that use
# find_package(Kiln).
function(kiln_add_plugin target)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "SOURCES;LIBRARIES" ${ARGN})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE Kiln::sdk ${ARG_LIBRARIES})
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME "kiln-${target}"
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  elseif(DEFINED KILN_BUILD_PLUGIN_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${KILN_BUILD_PLUGIN_DIR})
  endif()
endfunction()
