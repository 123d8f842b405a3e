# tide_add_layer(<target> DIRS <dir>... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
#
# One library per layer, built from every .cpp (and .cu) in its directories. Headers are
# included relative to the repository root ("tensor/tensor.h"), both in the
# build tree and once installed (under <prefix>/include/tide/).
#
# The layer also registers its install rules here, so a new layer added with
# tide_add_layer() is installed and exported (as tide::<target>) without
# touching cmake/TideInstall.cmake.
function(tide_add_layer target)
  cmake_parse_arguments(ARG "" "" "DIRS;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  set(sources)
  set(headers)
  foreach(dir ${ARG_DIRS})
    file(GLOB dir_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/${dir}/*.cpp
      ${PROJECT_SOURCE_DIR}/${dir}/*.cu)
    file(GLOB dir_headers CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/${dir}/*.h)
    list(APPEND sources ${dir_sources})
    list(APPEND headers ${dir_headers})
  endforeach()
  add_library(${target} ${sources})
  # The headers form a file set rooted at the repository root, so installing
  # the set keeps their directories: backends/types.h -> include/tide/backends/types.h.
  target_sources(${target} PUBLIC
    FILE_SET HEADERS
    BASE_DIRS ${PROJECT_SOURCE_DIR}
    FILES ${headers})
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/tide>)
  target_compile_features(${target} PUBLIC cxx_std_20)
  # Warnings for C++ sources only: nvcc (for the .cu files) does not take them.
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  # Installed layers find each other (libtide_autograd -> libtide_tensor) in
  # their own directory, whatever the install prefix.
  if(APPLE)
    set(rpath "@loader_path")
  else()
    set(rpath "$ORIGIN")
  endif()
  set_target_properties(${target} PROPERTIES
    TIDE_HEADERS "${headers}"
    VERSION ${PROJECT_VERSION}
    SOVERSION ${PROJECT_VERSION_MAJOR}
    INSTALL_RPATH "${rpath}")
  set_property(GLOBAL APPEND PROPERTY TIDE_LAYERS ${target})

  install(TARGETS ${target}
    EXPORT TideTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
    FILE_SET HEADERS DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tide)
endfunction()
