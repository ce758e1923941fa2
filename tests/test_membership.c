/* test_membership.c - the spread of partitions over instances (membership_spread, the
 * pure part of membership.c): even, the same whatever the order of the member list, and
 * a join or a death moves few partitions. The lease protocol itself runs against real
 * processes in test_leases.c. */
#include "membership.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define MAX_MEMBERS 16
#define MAX_PARTITIONS 256

static void names(char (*buf)[32], const char **members, int n, const char *prefix)
{
    for (int i = 0; i < n; i++) {
        snprintf(buf[i], sizeof buf[i], "%s-%d", prefix, i);
        members[i] = buf[i];
    }
}

/* owner names of each partition for members[0..n-1] */
static void spread_names(const char **members, int n, int partitions, const char **out)
{
    int owner[MAX_PARTITIONS];
    cr_assert_eq(membership_spread(members, (size_t)n, partitions, owner), 0);
    for (int p = 0; p < partitions; p++) {
        cr_assert(owner[p] >= 0 && owner[p] < n, "partition %d has an owner", p);
        out[p] = members[owner[p]];
    }
}

Test(membership, the_spread_is_even_for_any_counts)
{
    char buf[MAX_MEMBERS][32];
    const char *members[MAX_MEMBERS];
    for (int n = 1; n <= MAX_MEMBERS; n++)
        for (int partitions = 1; partitions <= 64; partitions++) {
            names(buf, members, n, "node");
            int owner[MAX_PARTITIONS], load[MAX_MEMBERS] = {0};
            cr_assert_eq(membership_spread(members, (size_t)n, partitions, owner), 0);
            for (int p = 0; p < partitions; p++)
                load[owner[p]]++;
            int lo = partitions, hi = 0;
            for (int i = 0; i < n; i++) {
                lo = load[i] < lo ? load[i] : lo;
                hi = load[i] > hi ? load[i] : hi;
            }
            cr_assert_leq(hi - lo, 1, "%d members, %d partitions: loads from %d to %d", n,
                          partitions, lo, hi);
        }
}

Test(membership, every_instance_computes_the_same_spread_whatever_the_order)
{
    const char *a[] = {"alpha", "bravo", "charlie", "delta"};
    const char *b[] = {"delta", "bravo", "alpha", "charlie"};
    const char *x[32], *y[32];
    spread_names(a, 4, 32, x);
    spread_names(b, 4, 32, y);
    for (int p = 0; p < 32; p++)
        cr_assert_str_eq(x[p], y[p], "partition %d", p);
}

static int moved(const char **before, const char **after, int partitions)
{
    int n = 0;
    for (int p = 0; p < partitions; p++)
        n += strcmp(before[p], after[p]) != 0;
    return n;
}

Test(membership, a_join_or_a_death_moves_few_partitions)
{
    char buf[MAX_MEMBERS][32];
    const char *members[MAX_MEMBERS];
    const int partitions = 64;
    int total_join = 0, total_death = 0;
    for (int n = 2; n < MAX_MEMBERS; n++) {
        names(buf, members, n + 1, "inst");
        const char *before[MAX_PARTITIONS], *joined[MAX_PARTITIONS], *died[MAX_PARTITIONS];
        spread_names(members, n, partitions, before);
        spread_names(members, n + 1, partitions, joined);
        /* the newcomer's share must move; a few more may, to keep the spread even */
        int share = partitions / (n + 1);
        int j = moved(before, joined, partitions);
        cr_assert_geq(j, share, "%d -> %d members: %d moved", n, n + 1, j);
        cr_assert_leq(j, 3 * share + 2, "%d -> %d members: %d moved (share %d)", n, n + 1, j,
                      share);
        /* a death: the dead member's partitions move, and few others */
        const char *dead = members[0];
        spread_names(members + 1, n - 1, partitions, died);
        int owned = 0;
        for (int p = 0; p < partitions; p++)
            owned += strcmp(before[p], dead) == 0;
        int d = moved(before, died, partitions);
        cr_assert_geq(d, owned);
        cr_assert_leq(d, 3 * owned + 2, "a death of %d members: %d moved, it owned %d", n, d,
                      owned);
        total_join += j;
        total_death += d;
    }
    cr_log_info("partitions moved over 13 joins: %d, over 13 deaths: %d", total_join,
                total_death);
}
