# Install rules for the package as a whole. Each layer library installs itself
# (see tide_add_layer in TideHelpers.cmake); this file adds the umbrella target
# tide::tide, the umbrella header, and the CMake package files, so that
#
#   find_package(Tide REQUIRED)
#   target_link_libraries(app PRIVATE tide::tide)
#
# works in any CMake project once Tide is installed.
include(CMakePackageConfigHelpers)

set(TIDE_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/Tide)

# tide_all (exported as tide::tide) carries the umbrella header tide.h, which
# lands next to the layer directories: <prefix>/include/tide/tide.h.
install(TARGETS tide_all
  EXPORT TideTargets
  FILE_SET HEADERS DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tide)

install(EXPORT TideTargets
  NAMESPACE tide::
  FILE TideTargets.cmake
  DESTINATION ${TIDE_INSTALL_CMAKEDIR})

# What TideConfig.cmake needs to know about this build: which dependencies a
# consumer has to find. With shared libraries (the default) oneDNN and OpenMP
# stay private to libtide_backend_cpu; static libraries pass them on.
if(BUILD_SHARED_LIBS)
  set(TIDE_SHARED_LIBS ON)
else()
  set(TIDE_SHARED_LIBS OFF)
endif()
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/TideConfig.cmake.in
  ${PROJECT_BINARY_DIR}/TideConfig.cmake
  INSTALL_DESTINATION ${TIDE_INSTALL_CMAKEDIR})
# 0.x releases are all compatible with each other by this rule; bump the
# major version for a breaking change once 1.0 is out.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/TideConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/TideConfig.cmake
  ${PROJECT_BINARY_DIR}/TideConfigVersion.cmake
  DESTINATION ${TIDE_INSTALL_CMAKEDIR})
