/* SPDX-License-Identifier: MIT */
/* Unit tests of the leader's health judgement (health.c) on a fake monotonic clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cluster/health.h"

#define SELF 1
#define HB 1000 /* heartbeat_ms */
#define DOWN_AFTER 5
#define LIMIT (HB * DOWN_AFTER)

/* A judge: the table it keeps, the records it reads, its clock. */
struct judge {
    struct health_table t;
    json_t *nodes;
    uint64_t leader_since;
    uint64_t wall_shift; /* added to every wall-clock field of the records */
    struct health_proposal out[HEALTH_PEERS_MAX];
    size_t n;
};

/* Sets node id's record: name "n<id>", health state; the wall-clock fields are made up
 * around 1.7e12 ms plus j->wall_shift (the judgement must not read them). */
static void record(struct judge *j, uint64_t id, const char *state)
{
    char name[16];
    snprintf(name, sizeof(name), "n%llu", (unsigned long long)id);
    json_t *rec = json_pack("{s:I, s:s, s:s, s:s, s:I, s:I}", "id", (json_int_t)id, "name", name,
                            "state", state, "admin", "active", "last_heartbeat_ms",
                            (json_int_t)(1700000000000 + j->wall_shift + id), "state_changed_ms",
                            (json_int_t)(1700000000000 + j->wall_shift));
    size_t i;
    json_t *old;
    json_array_foreach(j->nodes, i, old)
    {
        if ((uint64_t)json_integer_value(json_object_get(old, "id")) == id) {
            json_array_set_new(j->nodes, i, rec);
            return;
        }
    }
    json_array_append_new(j->nodes, rec);
}

/* A judge that took office at leader_since, with this node up and, unless state2 is NULL,
 * node 2 in state2. */
static void judge_init(struct judge *j, uint64_t leader_since, const char *state2)
{
    memset(j, 0, sizeof(*j));
    j->nodes = json_array();
    j->leader_since = leader_since;
    record(j, SELF, "up");
    if (state2)
        record(j, 2, state2);
}

/* Judges at now; returns the number of proposals (in j->out). */
static size_t judge_at(struct judge *j, uint64_t now)
{
    struct health_params p = {.self_id = SELF,
                              .leader_since = j->leader_since,
                              .now = now,
                              .heartbeat_ms = HB,
                              .down_after = DOWN_AFTER};
    j->n = health_judge(&j->t, j->nodes, &p, j->out, HEALTH_PEERS_MAX);
    return j->n;
}

static void heard(struct judge *j, uint64_t id, uint64_t now)
{
    health_peer(&j->t, id, now)->last_heard = now;
}

/* Asserts that the only proposal is state for node id, with that reason. */
static void proposed(const struct judge *j, uint64_t id, const char *state, const char *reason)
{
    assert_int_equal(j->n, 1);
    assert_int_equal(j->out[0].id, id);
    assert_string_equal(j->out[0].state, state);
    assert_string_equal(j->out[0].reason, reason);
    char name[16];
    snprintf(name, sizeof(name), "n%llu", (unsigned long long)id);
    assert_string_equal(j->out[0].name, name);
    assert_int_equal(json_integer_value(json_object_get(j->out[0].node, "id")), id);
}

/* Asserts that node id, silent since base, is not judged down at base + LIMIT, but 1 ms later. */
static void down_exactly_after(struct judge *j, uint64_t id, uint64_t base)
{
    assert_int_equal(judge_at(j, base + LIMIT), 0);
    judge_at(j, base + LIMIT + 1);
    proposed(j, id, "down", "no heartbeat for 5001 ms");
}

/* A node last heard at 10 s is down after exactly down_after silent periods: not at 15 s,
 * at 15.001 s. */
static void test_down_after_silent_periods(void **state)
{
    (void)state;
    struct judge j;
    judge_init(&j, 1000, "up");
    heard(&j, 2, 10000);
    assert_int_equal(judge_at(&j, 12000), 0);
    down_exactly_after(&j, 2, 10000);
    json_decref(j.nodes);
}

/* A node never heard is judged from when this node first knew of it or took office,
 * whichever is later: a new leader gives every node a full period. */
static void test_never_heard_full_period(void **state)
{
    (void)state;
    struct judge j;
    judge_init(&j, 1000, "up");
    assert_int_equal(judge_at(&j, 50000), 0); /* first seen now */
    assert_int_equal(judge_at(&j, 50000 + LIMIT), 0);
    /* This node lost office and took it again at 100 s: node 2 gets a full period again. */
    j.leader_since = 100000;
    down_exactly_after(&j, 2, 100000);
    /* A node first known after the leader took office is judged from then. */
    record(&j, 3, "up");
    record(&j, 2, "down");
    assert_int_equal(judge_at(&j, 200000), 0);
    down_exactly_after(&j, 3, 200000);
    /* A node heard before is judged from its heartbeat, whoever leads. */
    struct judge k;
    judge_init(&k, 1000, "up");
    heard(&k, 2, 2000);
    k.leader_since = 6000;
    down_exactly_after(&k, 2, 2000);
    json_decref(j.nodes);
    json_decref(k.nodes);
}

/* A down node goes up when it is heard again, not because time passed. */
static void test_up_only_when_heard(void **state)
{
    (void)state;
    struct judge j;
    judge_init(&j, 1000, "down");
    /* Never heard; a new leader's full period is no heartbeat. */
    j.leader_since = 50000;
    assert_int_equal(judge_at(&j, 50001), 0);
    assert_int_equal(judge_at(&j, 52000), 0);
    heard(&j, 2, 53000);
    judge_at(&j, 53000);
    proposed(&j, 2, "up", "heartbeats again");
    /* A heartbeat older than the limit brings nothing. */
    struct judge k;
    judge_init(&k, 1000, "down");
    heard(&k, 2, 10000);
    assert_int_equal(judge_at(&k, 10000 + LIMIT + 1), 0);
    json_decref(j.nodes);
    json_decref(k.nodes);
}

/* The leader marks itself up when its record says down, however long it was silent, and
 * never down. */
static void test_leader_marks_itself_up(void **state)
{
    (void)state;
    struct judge j;
    judge_init(&j, 1000, NULL);
    assert_int_equal(judge_at(&j, 1000000), 0);
    record(&j, SELF, "down");
    judge_at(&j, 1000001);
    proposed(&j, SELF, "up", "it leads the cluster");
    json_decref(j.nodes);
}

/* A proposal in flight is not made again until the records show it or the retry time
 * passed; once they show it, the next change is judged at once. */
static void test_in_flight_not_repeated(void **state)
{
    (void)state;
    struct judge j;
    judge_init(&j, 1000, "up");
    heard(&j, 2, 10000);
    uint64_t t0 = 10000 + LIMIT + 1;
    judge_at(&j, t0);
    proposed(&j, 2, "down", "no heartbeat for 5001 ms");
    assert_int_equal(judge_at(&j, t0 + 100), 0);
    assert_int_equal(judge_at(&j, t0 + HEALTH_PROPOSE_RETRY_MS - 1), 0);
    judge_at(&j, t0 + HEALTH_PROPOSE_RETRY_MS); /* lost with a leadership change, say */
    proposed(&j, 2, "down", "no heartbeat for 8001 ms");
    /* It lands: nothing more while it stays silent. */
    uint64_t t1 = t0 + HEALTH_PROPOSE_RETRY_MS;
    record(&j, 2, "down");
    assert_int_equal(judge_at(&j, t1 + 10), 0);
    assert_int_equal(judge_at(&j, t1 + 10 * HEALTH_PROPOSE_RETRY_MS), 0);
    /* Heard right after its down landed: up at once, then not again while in flight. */
    struct judge k;
    judge_init(&k, 1000, "up");
    heard(&k, 2, 10000);
    judge_at(&k, t0);
    record(&k, 2, "down");
    heard(&k, 2, t0 + 50);
    judge_at(&k, t0 + 100);
    proposed(&k, 2, "up", "heartbeats again");
    assert_int_equal(judge_at(&k, t0 + 200), 0);
    json_decref(j.nodes);
    json_decref(k.nodes);
}

/* The same monotonic history judged over records whose wall-clock fields jump on every tick
 * (around now, a year ahead, back to 0) gives the same proposals at the same times. Node 2
 * is heard until 8 s and from 25 s on; node 3 always. Proposals land on the next tick. */
static void test_wall_clock_jump_changes_nothing(void **state)
{
    (void)state;
    static const int64_t shifts[] = {0, 365LL * 24 * 3600 * 1000, -1700000000000LL};
    char first[1024] = "", seen[1024];
    for (size_t s = 0; s < sizeof(shifts) / sizeof(shifts[0]); s++) {
        struct judge j;
        const char *states[4] = {NULL, "up", "up", "up"};
        size_t len = 0;
        judge_init(&j, 1000, NULL);
        for (uint64_t now = 1000; now <= 30000; now += 100) {
            j.wall_shift = (uint64_t)shifts[s] + now * 7919;
            for (uint64_t id = 1; id <= 3; id++)
                record(&j, id, states[id]);
            if (now <= 8000 || now >= 25000)
                heard(&j, 2, now);
            heard(&j, 3, now);
            judge_at(&j, now);
            for (size_t i = 0; i < j.n; i++) {
                states[j.out[i].id] = j.out[i].state;
                len += (size_t)snprintf(seen + len, sizeof(seen) - len, "%llu:%llu:%s:%s;",
                                        (unsigned long long)now, (unsigned long long)j.out[i].id,
                                        j.out[i].state, j.out[i].reason);
            }
        }
        json_decref(j.nodes);
        if (s == 0)
            memcpy(first, seen, sizeof(first));
        else
            assert_string_equal(seen, first);
    }
    assert_string_equal(first, "13100:2:down:no heartbeat for 5100 ms;"
                               "25000:2:up:heartbeats again;");
}

/* A record without a name or state is not judged; nor are nodes beyond the table's size. */
static void test_limits(void **state)
{
    (void)state;
    struct judge j;
    judge_init(&j, 0, NULL);
    json_array_append_new(j.nodes, json_pack("{s:I}", "id", (json_int_t)999));
    for (uint64_t id = 2; id <= HEALTH_PEERS_MAX + 5; id++)
        record(&j, id, "up");
    assert_int_equal(judge_at(&j, 0), 0);
    assert_int_equal(j.t.n, HEALTH_PEERS_MAX); /* this node, 999 and 62 others */
    assert_null(health_peer(&j.t, 1000, 0));
    assert_int_equal(judge_at(&j, LIMIT + 1), HEALTH_PEERS_MAX - 2);
    for (size_t i = 0; i < j.n; i++)
        assert_int_equal(j.out[i].id, i + 2);
    json_decref(j.nodes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_down_after_silent_periods),
        cmocka_unit_test(test_never_heard_full_period),
        cmocka_unit_test(test_up_only_when_heard),
        cmocka_unit_test(test_leader_marks_itself_up),
        cmocka_unit_test(test_in_flight_not_repeated),
        cmocka_unit_test(test_wall_clock_jump_changes_nothing),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
