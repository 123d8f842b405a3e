# Fails when a Catch2 test name contains '[' (see tests/CMakeLists.txt).
# (Catch2 v2 exits with the number of tests listed, so the output is checked,
# not the exit code.)
execute_process(COMMAND ${TESTS} --list-test-names-only OUTPUT_VARIABLE names)
if(names STREQUAL "")
  message(FATAL_ERROR "could not list the test names of ${TESTS}")
endif()
string(REPLACE "\n" ";" names "${names}")
foreach(name IN LISTS names)
  if(name MATCHES "\\[")
    message(FATAL_ERROR "test name contains '[' and breaks CTest registration: ${name}")
  endif()
endforeach()
