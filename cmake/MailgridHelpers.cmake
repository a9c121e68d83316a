# One helper per kind of target, so each folder's CMakeLists.txt is a few
# declarative lines (the absl_cc_library idea). Include paths are rooted at
# the project root: #include "libs/base/status.h".

set(MAILGRID_WARNINGS -Wall -Wextra -Wpedantic -Wno-unused-parameter -Wno-missing-field-initializers)
if(MAILGRID_WERROR)
  list(APPEND MAILGRID_WARNINGS -Werror)
endif()

set(MAILGRID_SANITIZER_FLAGS "")
if(MAILGRID_SANITIZE)
  set(MAILGRID_SANITIZER_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
endif()

function(_mailgrid_common target)
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${target} PRIVATE ${MAILGRID_WARNINGS} ${MAILGRID_SANITIZER_FLAGS})
  if(MAILGRID_SANITIZE)
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  endif()
  if(MAILGRID_FUZZ)
    # Every library is instrumented for coverage, so a fuzz target gets
    # feedback from the parser it drives, not only from its own few lines.
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link,address,undefined)
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  endif()
  if(MAILGRID_TEST_HOOKS)
    target_compile_definitions(${target} PUBLIC MAILGRID_TEST_HOOKS=1)
  endif()
endfunction()

# mailgrid_cc_library(NAME n SRCS a.cc b.cc DEPS x y)
# Defines target mailgrid_<n> and alias mailgrid::<n>. A header-only library
# has no SRCS.
function(mailgrid_cc_library)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS" ${ARGN})
  set(t mailgrid_${A_NAME})
  if(A_SRCS)
    add_library(${t} STATIC ${A_SRCS})
    _mailgrid_common(${t})
    target_link_libraries(${t} PUBLIC ${A_DEPS})
  else()
    add_library(${t} INTERFACE)
    target_include_directories(${t} INTERFACE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${t} INTERFACE ${A_DEPS})
  endif()
  add_library(mailgrid::${A_NAME} ALIAS ${t})
endfunction()

# mailgrid_cc_binary(NAME n SRCS main.cc DEPS ...) → executable n in build/bin.
function(mailgrid_cc_binary)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${A_NAME} ${A_SRCS})
  _mailgrid_common(${A_NAME})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS})
  if(TARGET PkgConfig::mg_jemalloc)
    target_link_libraries(${A_NAME} PRIVATE PkgConfig::mg_jemalloc)
  endif()
  set_target_properties(${A_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin)
endfunction()

# mailgrid_cc_test(NAME n SRCS n.cc DEPS ... [LABELS unit]) → a GoogleTest
# binary whose cases are registered with CTest individually.
function(mailgrid_cc_test)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${A_NAME} ${A_SRCS})
  _mailgrid_common(${A_NAME})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  set_target_properties(${A_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  if(NOT A_LABELS)
    set(A_LABELS unit)
  endif()
  # One CTest entry per binary keeps the suite fast to enumerate; the binary's
  # own output names every failed case.
  add_test(NAME ${A_NAME} COMMAND ${A_NAME})
  set_tests_properties(${A_NAME} PROPERTIES LABELS "${A_LABELS}"
    ENVIRONMENT "MAILGRID_SOURCE_DIR=${PROJECT_SOURCE_DIR};MAILGRID_BINARY_DIR=${PROJECT_BINARY_DIR}")
endfunction()

# mailgrid_fuzzer(NAME n SRCS n.cc DEPS ...) → a libFuzzer target when
# MAILGRID_FUZZ is on (clang). Without it, the same file is built as a
# replay driver that runs each corpus file once, so fuzz targets always
# compile and their corpus runs as a test.
function(mailgrid_fuzzer)
  cmake_parse_arguments(A "" "NAME;CORPUS" "SRCS;DEPS" ${ARGN})
  add_executable(${A_NAME} ${A_SRCS})
  _mailgrid_common(${A_NAME})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS})
  set_target_properties(${A_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/fuzz)
  if(MAILGRID_FUZZ)
    target_compile_options(${A_NAME} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(${A_NAME} PRIVATE -fsanitize=fuzzer,address,undefined)
  else()
    target_sources(${A_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/libs/base/fuzz_replay_main.cc)
    if(A_CORPUS)
      add_test(NAME ${A_NAME}_corpus COMMAND ${A_NAME} ${A_CORPUS})
      set_tests_properties(${A_NAME}_corpus PROPERTIES LABELS fuzz)
    endif()
  endif()
endfunction()

# mailgrid_proto_library(NAME n PROTOS a.proto [GRPC] [ROOT dir] DEPS other_proto_libs)
# Generates C++ (and gRPC stubs with GRPC) into build/protos. Each file is
# named by its path relative to ROOT (default protos/), which is also its
# generated header's include path; protos/ is always on the import path.
# An internal proto kept beside its service uses ROOT ${PROJECT_SOURCE_DIR}
# (services/tenant/x.proto -> #include "services/tenant/x.pb.h").
function(mailgrid_proto_library)
  cmake_parse_arguments(A "GRPC" "NAME;ROOT" "PROTOS;DEPS" ${ARGN})
  if(NOT A_ROOT)
    set(A_ROOT ${PROJECT_SOURCE_DIR}/protos)
  endif()
  set(t mailgrid_${A_NAME})
  add_library(${t} STATIC)
  set(abs_protos "")
  foreach(p IN LISTS A_PROTOS)
    get_filename_component(p "${p}" ABSOLUTE)
    list(APPEND abs_protos "${p}")
  endforeach()
  target_sources(${t} PRIVATE ${abs_protos})
  # protobuf_generate derives each output's sub-directory from the include
  # path that contains the .proto, and CMAKE_CURRENT_SOURCE_DIR is always on
  # that path; pointing it (in this function's scope only) at ROOT makes
  # mailgrid/tenant/v1/x.proto generate mailgrid/tenant/v1/x.pb.h.
  set(CMAKE_CURRENT_SOURCE_DIR ${A_ROOT})
  set(out ${PROJECT_BINARY_DIR}/protos)
  file(MAKE_DIRECTORY ${out})
  target_include_directories(${t} SYSTEM PUBLIC ${out})
  target_link_libraries(${t} PUBLIC protobuf::libprotobuf ${A_DEPS})
  protobuf_generate(TARGET ${t} LANGUAGE cpp
    IMPORT_DIRS ${A_ROOT} ${PROJECT_SOURCE_DIR}/protos PROTOC_OUT_DIR ${out})
  if(A_GRPC)
    target_link_libraries(${t} PUBLIC gRPC::grpc++)
    protobuf_generate(TARGET ${t} LANGUAGE grpc
      GENERATE_EXTENSIONS .grpc.pb.h .grpc.pb.cc
      PLUGIN "protoc-gen-grpc=${GRPC_CPP_PLUGIN}"
      IMPORT_DIRS ${A_ROOT} ${PROJECT_SOURCE_DIR}/protos PROTOC_OUT_DIR ${out})
  endif()
  add_library(mailgrid::${A_NAME} ALIAS ${t})
endfunction()

# Adds every sub-folder of the current source directory that has a
# CMakeLists.txt, in name order: adding a component is adding its folder.
function(mailgrid_add_component_folders)
  file(GLOB children LIST_DIRECTORIES true RELATIVE ${CMAKE_CURRENT_SOURCE_DIR}
       ${CMAKE_CURRENT_SOURCE_DIR}/*)
  list(SORT children)
  foreach(child IN LISTS children)
    if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${child}/CMakeLists.txt)
      add_subdirectory(${child})
    endif()
  endforeach()
endfunction()
