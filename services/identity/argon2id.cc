// Argon2id, one lane, AVX2 compression function. The structure follows the
// reference implementation (phc-winner-argon2: core.c fill_segment,
// index_alpha, blake2b_long; opt.c fill_block) so each step can be checked
// against it; argon2id_test compares every output with libsodium's.
#include "services/identity/argon2id.h"

#include <immintrin.h>
#include <sodium.h>
#include <sys/mman.h>

#include <cstring>

namespace mailgrid::identity::argon2 {
namespace {

constexpr size_t kBlockWords = 128;  // 1 KiB
constexpr uint32_t kSyncPoints = 4;
constexpr uint32_t kAddressesInBlock = 128;
constexpr uint32_t kVersion = 0x13;
constexpr uint32_t kTypeId = 2;

struct alignas(64) Block {
  uint64_t v[kBlockWords];
};

void Store32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// ---------------------------------------------------------------- BLAKE2b

void Blake2b(uint8_t* out, size_t out_len, const uint8_t* in, size_t in_len) {
  crypto_generichash_blake2b(out, out_len, in, in_len, nullptr, 0);
}

// H' of RFC 9106 §3.3 (blake2b_long): any output length from 64-byte BLAKE2b.
void Blake2bLong(uint8_t* out, size_t out_len, const uint8_t* in, size_t in_len) {
  uint8_t len_le[4];
  Store32(len_le, static_cast<uint32_t>(out_len));
  crypto_generichash_blake2b_state st;
  if (out_len <= crypto_generichash_blake2b_BYTES_MAX) {
    crypto_generichash_blake2b_init(&st, nullptr, 0, out_len);
    crypto_generichash_blake2b_update(&st, len_le, 4);
    crypto_generichash_blake2b_update(&st, in, in_len);
    crypto_generichash_blake2b_final(&st, out, out_len);
    return;
  }
  uint8_t v[64], next[64];
  crypto_generichash_blake2b_init(&st, nullptr, 0, 64);
  crypto_generichash_blake2b_update(&st, len_le, 4);
  crypto_generichash_blake2b_update(&st, in, in_len);
  crypto_generichash_blake2b_final(&st, v, 64);
  std::memcpy(out, v, 32);
  out += 32;
  size_t left = out_len - 32;
  while (left > 64) {
    Blake2b(next, 64, v, 64);
    std::memcpy(v, next, 64);
    std::memcpy(out, v, 32);
    out += 32;
    left -= 32;
  }
  Blake2b(next, left, v, 64);
  std::memcpy(out, next, left);
  sodium_memzero(v, sizeof v);
  sodium_memzero(next, sizeof next);
}

// ------------------------------------------------ compression G (AVX2)

#define MG_AVX2 __attribute__((target("avx2")))

MG_AVX2 inline __m256i RotR32(__m256i x) {
  return _mm256_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1));
}
MG_AVX2 inline __m256i RotR24(__m256i x) {
  const __m256i r24 = _mm256_setr_epi8(3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10, 3, 4,
                                       5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10);
  return _mm256_shuffle_epi8(x, r24);
}
MG_AVX2 inline __m256i RotR16(__m256i x) {
  const __m256i r16 = _mm256_setr_epi8(2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9, 2, 3,
                                       4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9);
  return _mm256_shuffle_epi8(x, r16);
}
MG_AVX2 inline __m256i RotR63(__m256i x) {
  return _mm256_xor_si256(_mm256_srli_epi64(x, 63), _mm256_add_epi64(x, x));
}
// BlaMka: a + b + 2 * lo32(a) * lo32(b).
MG_AVX2 inline __m256i BlaMka(__m256i a, __m256i b) {
  __m256i m = _mm256_mul_epu32(a, b);
  return _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(m, m));
}

// G on four columns at once (lane k of a, b, c, d is v_k, v_4+k, v_8+k,
// v_12+k), for two independent sets, step by step, so the CPU always has
// a second chain to work on while one waits on its multiply or shuffle.
MG_AVX2 inline void G4x2(__m256i& a0, __m256i& b0, __m256i& c0, __m256i& d0, __m256i& a1,
                         __m256i& b1, __m256i& c1, __m256i& d1) {
  a0 = BlaMka(a0, b0);
  a1 = BlaMka(a1, b1);
  d0 = RotR32(_mm256_xor_si256(d0, a0));
  d1 = RotR32(_mm256_xor_si256(d1, a1));
  c0 = BlaMka(c0, d0);
  c1 = BlaMka(c1, d1);
  b0 = RotR24(_mm256_xor_si256(b0, c0));
  b1 = RotR24(_mm256_xor_si256(b1, c1));
  a0 = BlaMka(a0, b0);
  a1 = BlaMka(a1, b1);
  d0 = RotR16(_mm256_xor_si256(d0, a0));
  d1 = RotR16(_mm256_xor_si256(d1, a1));
  c0 = BlaMka(c0, d0);
  c1 = BlaMka(c1, d1);
  b0 = RotR63(_mm256_xor_si256(b0, c0));
  b1 = RotR63(_mm256_xor_si256(b1, c1));
}

// Rows b, c, d rotated left by 1, 2, 3 lanes: the diagonals become columns.
MG_AVX2 inline void Diagonalize(__m256i& b, __m256i& c, __m256i& d) {
  b = _mm256_permute4x64_epi64(b, _MM_SHUFFLE(0, 3, 2, 1));
  c = _mm256_permute4x64_epi64(c, _MM_SHUFFLE(1, 0, 3, 2));
  d = _mm256_permute4x64_epi64(d, _MM_SHUFFLE(2, 1, 0, 3));
}
MG_AVX2 inline void Undiagonalize(__m256i& b, __m256i& c, __m256i& d) {
  b = _mm256_permute4x64_epi64(b, _MM_SHUFFLE(2, 1, 0, 3));
  c = _mm256_permute4x64_epi64(c, _MM_SHUFFLE(1, 0, 3, 2));
  d = _mm256_permute4x64_epi64(d, _MM_SHUFFLE(0, 3, 2, 1));
}

// The BLAKE2b round without message on two sets of v0..v15 held as rows
// a..d: the columns, then the diagonals.
MG_AVX2 inline void Round2(__m256i& a0, __m256i& b0, __m256i& c0, __m256i& d0, __m256i& a1,
                           __m256i& b1, __m256i& c1, __m256i& d1) {
  G4x2(a0, b0, c0, d0, a1, b1, c1, d1);
  Diagonalize(b0, c0, d0);
  Diagonalize(b1, c1, d1);
  G4x2(a0, b0, c0, d0, a1, b1, c1, d1);
  Undiagonalize(b0, c0, d0);
  Undiagonalize(b1, c1, d1);
}

MG_AVX2 inline __m256i Load(const uint64_t* p) {
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
}
MG_AVX2 inline void StoreV(uint64_t* p, __m256i v) {
  _mm256_store_si256(reinterpret_cast<__m256i*>(p), v);
}
// Two 128-bit halves {p[0], p[1], q[0], q[1]}.
MG_AVX2 inline __m256i LoadPair(const uint64_t* p, const uint64_t* q) {
  __m128i lo = _mm_load_si128(reinterpret_cast<const __m128i*>(p));
  __m128i hi = _mm_load_si128(reinterpret_cast<const __m128i*>(q));
  return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}
MG_AVX2 inline void StorePair(uint64_t* p, uint64_t* q, __m256i v) {
  _mm_store_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(v));
  _mm_store_si128(reinterpret_cast<__m128i*>(q), _mm256_extracti128_si256(v, 1));
}

// next = P(prev ^ ref) ^ (prev ^ ref) [^ next when with_xor]: P is the
// BLAKE2b round on the 8 rows of 16 words, then on the 8 columns of word
// pairs (words 2i, 2i+1, 2i+16, 2i+17, ..., 2i+112, 2i+113).
MG_AVX2 void Compress(const Block& prev, const Block& ref, Block& next, bool with_xor) {
  Block r, t;
  for (size_t i = 0; i < kBlockWords; i += 4) {
    __m256i x = _mm256_xor_si256(Load(prev.v + i), Load(ref.v + i));
    StoreV(r.v + i, x);
    if (with_xor) x = _mm256_xor_si256(x, Load(next.v + i));
    StoreV(t.v + i, x);
  }
  for (size_t g = 0; g < 8; g += 2) {
    uint64_t* row0 = r.v + 16 * g;
    uint64_t* row1 = row0 + 16;
    __m256i a0 = Load(row0), b0 = Load(row0 + 4), c0 = Load(row0 + 8), d0 = Load(row0 + 12);
    __m256i a1 = Load(row1), b1 = Load(row1 + 4), c1 = Load(row1 + 8), d1 = Load(row1 + 12);
    Round2(a0, b0, c0, d0, a1, b1, c1, d1);
    StoreV(row0, a0);
    StoreV(row0 + 4, b0);
    StoreV(row0 + 8, c0);
    StoreV(row0 + 12, d0);
    StoreV(row1, a1);
    StoreV(row1 + 4, b1);
    StoreV(row1 + 8, c1);
    StoreV(row1 + 12, d1);
  }
  for (size_t g = 0; g < 8; g += 2) {
    uint64_t* col0 = r.v + 2 * g;
    uint64_t* col1 = col0 + 2;
    __m256i a0 = LoadPair(col0, col0 + 16), b0 = LoadPair(col0 + 32, col0 + 48);
    __m256i c0 = LoadPair(col0 + 64, col0 + 80), d0 = LoadPair(col0 + 96, col0 + 112);
    __m256i a1 = LoadPair(col1, col1 + 16), b1 = LoadPair(col1 + 32, col1 + 48);
    __m256i c1 = LoadPair(col1 + 64, col1 + 80), d1 = LoadPair(col1 + 96, col1 + 112);
    Round2(a0, b0, c0, d0, a1, b1, c1, d1);
    StorePair(col0, col0 + 16, a0);
    StorePair(col0 + 32, col0 + 48, b0);
    StorePair(col0 + 64, col0 + 80, c0);
    StorePair(col0 + 96, col0 + 112, d0);
    StorePair(col1, col1 + 16, a1);
    StorePair(col1 + 32, col1 + 48, b1);
    StorePair(col1 + 64, col1 + 80, c1);
    StorePair(col1 + 96, col1 + 112, d1);
  }
  for (size_t i = 0; i < kBlockWords; i += 4)
    StoreV(next.v + i, _mm256_xor_si256(Load(r.v + i), Load(t.v + i)));
}

// ------------------------------------------------------------- the fill

// The next 128 reference positions of a data-independent segment.
void NextAddresses(Block& address, Block& input, const Block& zero) {
  ++input.v[6];
  Compress(zero, input, address, false);
  Compress(zero, address, address, false);
}

// index_alpha of the reference for one lane (the reference lane is always
// this lane): maps 32 pseudo-random bits onto the blocks this one may use.
uint32_t IndexAlpha(uint32_t pass, uint32_t slice, uint32_t index, uint32_t rand32,
                    uint32_t segment, uint32_t lane_len) {
  uint32_t area;
  if (pass == 0)
    area = (slice == 0 ? 0 : slice * segment) + index - 1;
  else
    area = lane_len - segment + index - 1;
  uint64_t rel = rand32;
  rel = (rel * rel) >> 32;
  rel = area - 1 - ((area * rel) >> 32);
  uint32_t start = 0;
  if (pass != 0) start = (slice == kSyncPoints - 1) ? 0 : (slice + 1) * segment;
  return static_cast<uint32_t>((start + rel) % lane_len);
}

void FillSegment(Block* mem, uint32_t pass, uint32_t slice, uint32_t passes, uint32_t blocks) {
  const uint32_t segment = blocks / kSyncPoints;
  const uint32_t lane_len = blocks;
  const bool independent = pass == 0 && slice < kSyncPoints / 2;  // argon2id's first half
  Block zero{}, input{}, address{};
  if (independent) {
    input.v[0] = pass;
    input.v[1] = 0;  // lane
    input.v[2] = slice;
    input.v[3] = blocks;
    input.v[4] = passes;
    input.v[5] = kTypeId;
  }
  uint32_t start = 0;
  if (pass == 0 && slice == 0) {
    start = 2;  // blocks 0 and 1 come from H0
    if (independent) NextAddresses(address, input, zero);
  }
  uint32_t curr = slice * segment + start;
  uint32_t prev = (curr % lane_len == 0) ? curr + lane_len - 1 : curr - 1;
  for (uint32_t i = start; i < segment; ++i, ++curr, ++prev) {
    if (curr % lane_len == 1) prev = curr - 1;
    uint64_t rand;
    if (independent) {
      if (i % kAddressesInBlock == 0) NextAddresses(address, input, zero);
      rand = address.v[i % kAddressesInBlock];
    } else {
      rand = mem[prev].v[0];
    }
    uint32_t ref = IndexAlpha(pass, slice, i, static_cast<uint32_t>(rand), segment, lane_len);
    Compress(mem[prev], mem[ref], mem[curr], pass != 0);
  }
  sodium_memzero(&address, sizeof address);
  sodium_memzero(&input, sizeof input);
}

}  // namespace

Scratch::~Scratch() {
  if (base_ != nullptr) munmap(base_, bytes_);
}

void* Scratch::Blocks(size_t blocks) {
  size_t want = blocks * sizeof(Block);
  if (base_ != nullptr && bytes_ >= want) return base_;
  if (base_ != nullptr) munmap(base_, bytes_);
  base_ = nullptr;
  bytes_ = 0;
  void* p = mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  (void)madvise(p, want, MADV_DONTDUMP);
  base_ = p;
  bytes_ = want;
  return base_;
}

bool Available() {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2;
}

bool Hash(std::string_view password, std::string_view salt, uint32_t t, uint32_t m_kib,
          uint8_t* out, size_t out_len, Scratch& scratch) {
  if (!Available() || t < 1 || m_kib < 8 || out_len < crypto_generichash_blake2b_BYTES_MIN ||
      out_len > crypto_generichash_blake2b_BYTES_MAX || salt.size() < 8 ||
      password.size() > 0xffffffffu || salt.size() > 0xffffffffu)
    return false;
  const uint32_t blocks =
      m_kib - m_kib % kSyncPoints;  // 4 * lanes * floor(m / (4 * lanes)), lanes = 1
  auto* mem = static_cast<Block*>(scratch.Blocks(blocks));
  if (mem == nullptr) return false;

  // H0 (RFC 9106 §3.2 step 1): the parameters, password and salt.
  crypto_generichash_blake2b_state st;
  uint8_t le[4];
  crypto_generichash_blake2b_init(&st, nullptr, 0, 64);
  for (uint32_t v : {1u, static_cast<uint32_t>(out_len), m_kib, t, kVersion, kTypeId}) {
    Store32(le, v);
    crypto_generichash_blake2b_update(&st, le, 4);
  }
  Store32(le, static_cast<uint32_t>(password.size()));
  crypto_generichash_blake2b_update(&st, le, 4);
  crypto_generichash_blake2b_update(&st, reinterpret_cast<const uint8_t*>(password.data()),
                                    password.size());
  Store32(le, static_cast<uint32_t>(salt.size()));
  crypto_generichash_blake2b_update(&st, le, 4);
  crypto_generichash_blake2b_update(&st, reinterpret_cast<const uint8_t*>(salt.data()),
                                    salt.size());
  Store32(le, 0);  // no secret
  crypto_generichash_blake2b_update(&st, le, 4);
  crypto_generichash_blake2b_update(&st, le, 4);  // no associated data
  uint8_t seed[72];
  crypto_generichash_blake2b_final(&st, seed, 64);

  // B[0] = H'(H0 || 0 || lane), B[1] = H'(H0 || 1 || lane).
  Store32(seed + 68, 0);
  for (uint32_t i = 0; i < 2; ++i) {
    Store32(seed + 64, i);
    Blake2bLong(reinterpret_cast<uint8_t*>(mem[i].v), sizeof(Block), seed, sizeof seed);
  }
  sodium_memzero(seed, sizeof seed);

  for (uint32_t pass = 0; pass < t; ++pass)
    for (uint32_t slice = 0; slice < kSyncPoints; ++slice) FillSegment(mem, pass, slice, t, blocks);

  Blake2bLong(out, out_len, reinterpret_cast<const uint8_t*>(mem[blocks - 1].v), sizeof(Block));
  return true;
}

}  // namespace mailgrid::identity::argon2
