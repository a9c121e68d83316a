# Every third-party dependency comes from Debian 12's packages; .ci/run and
# tools/mailgrid install them (see tools/packages.txt).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(RocksDB CONFIG REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(GTest CONFIG REQUIRED)
find_package(OpenSSL REQUIRED)
# pkg-config prefixes are mg_*: a plain prefix such as "zstd" would set
# zstd_INCLUDE_DIRS, which RocksDB's own Findzstd.cmake then mistakes for a
# cached result on the next configure. Targets keep the short names.
foreach(pair IN ITEMS hiredis:hiredis sodium:libsodium zstd:libzstd cares:libcares oath:liboath
                      qrencode:libqrencode idn2:libidn2)
  string(REPLACE ":" ";" pair "${pair}")
  list(GET pair 0 short)
  list(GET pair 1 module)
  pkg_check_modules(mg_${short} REQUIRED IMPORTED_TARGET GLOBAL ${module})
  add_library(PkgConfig::${short} ALIAS PkgConfig::mg_${short})
endforeach()
# jemalloc replaces glibc's malloc in the programs (MailgridHelpers.cmake:
# mailgrid_cc_binary): the raft loop spent ~8% of its samples in glibc's
# _int_malloc/malloc_consolidate/_int_free at 64 replicated writers, and
# LD_PRELOAD=libjemalloc A/Bs cost 5-7% less CPU per write (docs/benchmarks.md).
# Not with the sanitizers or libFuzzer, whose runtimes replace malloc too.
if(MAILGRID_JEMALLOC AND NOT MAILGRID_SANITIZE AND NOT MAILGRID_FUZZ)
  pkg_check_modules(mg_jemalloc REQUIRED IMPORTED_TARGET GLOBAL jemalloc)
endif()
# libunistring ships no pkg-config file.
find_library(UNISTRING_LIBRARY unistring REQUIRED)
add_library(PkgConfig::unistring UNKNOWN IMPORTED)
set_target_properties(PkgConfig::unistring PROPERTIES IMPORTED_LOCATION ${UNISTRING_LIBRARY})
find_path(ASIO_INCLUDE_DIR asio.hpp REQUIRED)

find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
