# The install_consumer test: installs a Tide build tree into a scratch prefix,
# then configures, builds and runs the separate project in this directory
# against that prefix. Everything is written under WORK_DIR (in the build tree),
# never into the source tree.
#
#   cmake -DBUILD_DIR=<tide build dir> -DWORK_DIR=<scratch dir>
#         [-DCONFIG=Release] [-DCXX_COMPILER=...] [-DGENERATOR=...]
#         [-DSANITIZE=address,undefined] -P run_consumer.cmake
cmake_minimum_required(VERSION 3.25)

foreach(var BUILD_DIR WORK_DIR)
  if(NOT ${var})
    message(FATAL_ERROR "run_consumer.cmake: pass -D${var}=...")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()
set(source_dir ${CMAKE_CURRENT_LIST_DIR})
set(prefix ${WORK_DIR}/prefix)
set(consumer_build ${WORK_DIR}/build)

# Runs a command, echoing it, and stops the test if it fails.
function(run_step description)
  message(STATUS "install_consumer: ${description}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "install_consumer: '${description}' failed (${result})")
  endif()
endfunction()

# Start from nothing, so a stale prefix cannot hide a missing install rule.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

run_step("install into ${prefix}"
  ${CMAKE_COMMAND} --install ${BUILD_DIR} --config ${CONFIG} --prefix ${prefix})

# The consumer is built the way the Tide build was (compiler, build type and,
# when set, sanitizers, whose runtime the instrumented libraries need).
set(configure_args
  -S ${source_dir} -B ${consumer_build}
  -DCMAKE_BUILD_TYPE=${CONFIG}
  -DCMAKE_PREFIX_PATH=${prefix}
  # Find Tide only in the prefix: not via a package registry.
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(GENERATOR)
  list(APPEND configure_args -G ${GENERATOR})
endif()
if(CXX_COMPILER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()
if(SANITIZE)
  list(APPEND configure_args
    "-DCMAKE_CXX_FLAGS=-fsanitize=${SANITIZE} -fno-omit-frame-pointer"
    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=${SANITIZE}")
endif()
run_step("configure the consumer project" ${CMAKE_COMMAND} ${configure_args})

# find_package must have used the freshly installed package, not another Tide.
file(STRINGS ${consumer_build}/CMakeCache.txt tide_dir_line REGEX "^Tide_DIR:")
string(REGEX REPLACE "^Tide_DIR:[A-Z]+=" "" tide_dir "${tide_dir_line}")
file(REAL_PATH ${prefix} real_prefix)
file(REAL_PATH "${tide_dir}" real_tide_dir)
string(FIND "${real_tide_dir}" "${real_prefix}/" position)
if(NOT position EQUAL 0)
  message(FATAL_ERROR "install_consumer: found Tide in '${tide_dir}', not under ${prefix}")
endif()

run_step("build the consumer" ${CMAKE_COMMAND} --build ${consumer_build} --config ${CONFIG})

# Multi-config generators put the program in a per-config folder.
find_program(consumer_exe tide_consumer
  PATHS ${consumer_build} ${consumer_build}/${CONFIG} NO_DEFAULT_PATH REQUIRED)
run_step("run ${consumer_exe}" ${consumer_exe})
