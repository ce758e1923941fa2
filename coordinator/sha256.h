/* sha256.h - a small SHA-256 (FIPS 180-4), used for the content hash of definitions.
 *
 * Written for this project so the core needs no crypto library: it hashes a few KiB per
 * definition at load time, so clarity beats speed here. */
#ifndef SAGA_SHA256_H
#define SAGA_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32
#define SHA256_HEX_LEN (2 * SHA256_DIGEST_LEN)   /* without the terminating NUL */
#define SHA256_BLOCK_LEN 64

/* Running state; an embedded struct: sha256_init, then updates, then sha256_final. */
typedef struct sha256 {
    uint32_t state[8];
    uint64_t total_len;                 /* bytes hashed so far */
    uint8_t block[SHA256_BLOCK_LEN];    /* pending partial block */
    size_t block_len;
} sha256_t;

void sha256_init(sha256_t *s);
void sha256_update(sha256_t *s, const void *data, size_t len);
/* Writes the digest; s must be re-initialised before reuse. */
void sha256_final(sha256_t *s, uint8_t digest[SHA256_DIGEST_LEN]);

/* Hashes data in one go and writes the lowercase hex digest plus a NUL to hex. */
void sha256_hex(const void *data, size_t len, char hex[SHA256_HEX_LEN + 1]);

#endif
