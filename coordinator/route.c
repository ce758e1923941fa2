/* route.c - saga id to home partition (see route.h). */
#include "route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint32_t route_murmur2(const void *key, size_t len)
{
    const uint32_t m = 0x5bd1e995;
    const int r = 24;
    const unsigned char *data = key;
    uint32_t h = 0x9747b28c ^ (uint32_t)len;
    size_t n4 = len / 4;
    for (size_t i = 0; i < n4; i++) {
        const unsigned char *b = data + i * 4;
        uint32_t k = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    const unsigned char *tail = data + n4 * 4;
    switch (len & 3) {
    case 3: h ^= (uint32_t)tail[2] << 16; /* fall through */
    case 2: h ^= (uint32_t)tail[1] << 8;  /* fall through */
    case 1:
        h ^= (uint32_t)tail[0];
        h *= m;
        break;
    default: break;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

/* The partition a generated id names, or -1 when id is not of that form. */
static int32_t generated_partition(const char *id)
{
    if (id[0] != 'p' || id[1] < '0' || id[1] > '9')
        return -1;
    char *end;
    long p = strtol(id + 1, &end, 10);
    if (p > INT32_MAX || strncmp(end, "-o", 2) != 0 || end[2] < '0' || end[2] > '9')
        return -1;
    for (const char *d = end + 2; *d; d++)
        if (*d < '0' || *d > '9')
            return -1;
    return (int32_t)p;
}

int32_t route_home(const char *id, int32_t routing_partitions, int32_t topic_partitions)
{
    int32_t g = generated_partition(id);
    if (g >= 0 && g < topic_partitions)
        return g;
    if (routing_partitions <= 1)
        return 0;
    return (int32_t)((route_murmur2(id, strlen(id)) & 0x7fffffff) %
                     (uint32_t)routing_partitions);
}

void route_generated_id(char *buf, size_t len, int32_t partition, int64_t offset)
{
    snprintf(buf, len, "p%d-o%lld", (int)partition, (long long)offset);
}
