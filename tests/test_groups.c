/* test_groups.c - parallel step groups end to end: a real coordinator, redis-server, the
 * embedded broker and a scripted participant run tests/sagas/trip.json (flight, then
 * hotel and car at once, then confirm). A group's commands go out together, before any of
 * them is answered; when one branch fails or times out, every branch that completed (or
 * may have: timed out) is compensated exactly once, and never before its own reply or
 * timeout. State is read through the documented Redis keys (docs/redis.md). */
#include "scripted.h"
#include "system.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define WAIT_MS 20000
#define LATE_MS 1500   /* a sibling's late reply: well inside the 2 s action timeout */

static test_system_t sys;
static long long warm_up_compensated; /* 1 when the warm-up saga compensated */
static scripted_t *participant;
static const char *const TOPICS[] = {"travel.commands", NULL};

static bool warm_up_finished(void *opaque)
{
    (void)opaque;
    char buf[64];
    const char *st = system_field(&sys, "trip-warm-up", "status", buf, sizeof buf);
    return st && (strcmp(st, "completed") == 0 || strcmp(st, "compensated") == 0);
}

static void start_system(const script_rule_t *rules, size_t n)
{
    cr_assert_eq(system_start(&sys, NULL, NULL, NULL), 0, "system starts");
    cr_assert_geq(system_add_coordinator(&sys, NULL, NULL), 0);
    participant = scripted_start(sys.broker.bootstrap, TOPICS, rules, n);
    cr_assert_not_null(participant);
    cr_assert(system_wait_owned(&sys, WAIT_MS), "the coordinator owns every partition");
    /* The first message through the mock broker to a consumer idle since it started can
     * take seconds (docs/devbroker.md), longer than trip's 2 s step timeouts: one saga
     * warms the path up, and whatever it sent is forgotten. */
    cr_assert_eq(system_start_saga(&sys, "trip-warm-up", "trip", "{\"trip_id\": \"w\"}"), 0);
    if (!fixture_wait_until(warm_up_finished, NULL, WAIT_MS))
        system_explain(&sys, "trip-warm-up");
    cr_assert(warm_up_finished(NULL), "the warm-up saga ends");
    scripted_forget(participant);
    warm_up_compensated = system_counter(&sys, "trip:compensated");
}

static void stop_system(void)
{
    scripted_stop(participant);
    participant = NULL;
    system_stop(&sys);
}

TestSuite(groups, .fini = stop_system, .timeout = 120);

static void start_trip(const char *id)
{
    char input[128];
    snprintf(input, sizeof input, "{\"trip_id\": \"%s\", \"city\": \"Lyon\"}", id);
    cr_assert_eq(system_start_saga(&sys, id, "trip", input), 0);
}

static void expect_status(const char *id, const char *status)
{
    char why[8192] = "";
    cr_assert(system_expect_status(&sys, id, status, WAIT_MS, why, sizeof why), "%s", why);
}

/* The ts of the first history entry with that event (and step, unless NULL); -1 if none. */
static long long event_ts(const json_t *history, const char *event, const char *step)
{
    size_t i;
    const json_t *h;
    json_array_foreach(history, i, h)
    {
        const char *e = json_string_value(json_object_get(h, "event"));
        const char *s = json_string_value(json_object_get(h, "step"));
        if (e && strcmp(e, event) == 0 && (!step || (s && strcmp(s, step) == 0)))
            return (long long)json_integer_value(json_object_get(h, "ts"));
    }
    return -1;
}

/* How many history entries have that event and step. */
static int event_count(const json_t *history, const char *event, const char *step)
{
    int n = 0;
    size_t i;
    const json_t *h;
    json_array_foreach(history, i, h)
    {
        const char *e = json_string_value(json_object_get(h, "event"));
        const char *s = json_string_value(json_object_get(h, "step"));
        if (e && s && strcmp(e, event) == 0 && strcmp(s, step) == 0)
            n++;
    }
    return n;
}

/* How many commands for that step and kind the participant got for saga id. */
static int commands_for(const char *id, const char *step, const char *kind)
{
    json_t *cmds = scripted_commands(participant, id);
    int n = 0;
    size_t i;
    json_t *c;
    json_array_foreach(cmds, i, c)
    {
        if (strcmp(json_string_value(json_object_get(c, "step")), step) == 0 &&
            strcmp(json_string_value(json_object_get(c, "kind")), kind) == 0)
            n++;
    }
    json_decref(cmds);
    return n;
}

/* The command for that step and kind (first attempt), new reference or NULL. */
static json_t *command_of(const char *id, const char *step, const char *kind)
{
    json_t *cmds = scripted_commands(participant, id), *found = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(cmds, i, c)
    {
        if (!found && strcmp(json_string_value(json_object_get(c, "step")), step) == 0 &&
            strcmp(json_string_value(json_object_get(c, "kind")), kind) == 0)
            found = json_incref(c);
    }
    json_decref(cmds);
    return found;
}

static void expect_trail_one_of(const char *id, const char *a, const char *b)
{
    char trail[2048];
    scripted_trail(participant, id, trail, sizeof trail);
    cr_assert(strcmp(trail, a) == 0 || strcmp(trail, b) == 0,
              "commands for %s: %s\nexpected: %s\n      or: %s", id, trail, a, b);
}

static const script_rule_t HAPPY_RULES[] = {
    {"trip-ok", "hotel", "action", 0, SCRIPT_OK_AFTER, NULL, 700},
    {"trip-ok", "car", "action", 0, SCRIPT_OK_AFTER, NULL, 700},
};

Test(groups, happy_path_sends_a_groups_commands_at_once)
{
    start_system(HAPPY_RULES, sizeof HAPPY_RULES / sizeof *HAPPY_RULES);
    start_trip("trip-ok");

    /* Both branches reach the participant while neither has been answered. */
    cr_assert(scripted_wait(participant, 3, WAIT_MS), "flight, hotel and car commands");
    json_t *hotel = command_of("trip-ok", "hotel", "action");
    json_t *car = command_of("trip-ok", "car", "action");
    cr_assert(hotel && car, "the participant got both branches before answering either");
    cr_assert_eq(json_integer_value(json_object_get(hotel, "sent_at")),
                 json_integer_value(json_object_get(car, "sent_at")),
                 "one transition sent both");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(hotel, "payload"), "flight")),
                     "trip-ok", "the flight's output flows into the group");
    json_decref(hotel);
    json_decref(car);

    /* While the group runs, the hash says which group and names one of its steps. */
    json_t *saga = system_saga(&sys, "trip-ok", NULL);
    cr_assert_str_eq(json_string_value(json_object_get(saga, "status")), "running");
    cr_assert_str_eq(json_string_value(json_object_get(saga, "group")), "1");
    cr_assert_str_eq(json_string_value(json_object_get(saga, "step")), "car",
                     "step names the group's last step in file order");
    cr_assert_str_eq(json_string_value(json_object_get(saga, "step_index")), "2");
    json_decref(saga);

    expect_status("trip-ok", "completed");
    expect_trail_one_of("trip-ok", "flight/action/1 hotel/action/1 car/action/1 confirm/action/1",
                        "flight/action/1 car/action/1 hotel/action/1 confirm/action/1");
    json_t *h = system_history(&sys, "trip-ok");
    long long hotel_sent = event_ts(h, "action_sent", "hotel");
    long long car_sent = event_ts(h, "action_sent", "car");
    long long hotel_ok = event_ts(h, "action_ok", "hotel");
    long long car_ok = event_ts(h, "action_ok", "car");
    long long confirm_sent = event_ts(h, "action_sent", "confirm");
    cr_assert(hotel_sent > 0 && hotel_sent == car_sent, "sent together: %lld %lld", hotel_sent,
              car_sent);
    cr_assert_geq(hotel_ok - hotel_sent, 700, "the hotel answered after its delay");
    cr_assert_geq(car_ok - car_sent, 700);
    cr_assert(confirm_sent >= hotel_ok && confirm_sent >= car_ok,
              "confirm waits for the whole group");
    json_decref(h);
    saga = system_saga(&sys, "trip-ok", NULL);
    cr_assert_str_eq(json_string_value(json_object_get(saga, "group")), "2");
    cr_assert_str_eq(json_string_value(json_object_get(saga, "step")), "confirm");
    json_decref(saga);
}

static const script_rule_t FAIL_RULES[] = {
    /* The car fails at once while the hotel is still booking; the hotel then succeeds. */
    {"trip-car-fails", "car", "action", 0, SCRIPT_FAIL, NULL, 0},
    {"trip-car-fails", "hotel", "action", 0, SCRIPT_OK_AFTER, NULL, LATE_MS},
    /* And the other way round. */
    {"trip-hotel-fails", "hotel", "action", 0, SCRIPT_FAIL, NULL, 0},
    {"trip-hotel-fails", "car", "action", 0, SCRIPT_OK_AFTER, NULL, LATE_MS},
};

/* The failed branch is not compensated (no effect); the late one is, once, after its
 * reply; the flight after the whole group settled. */
static void expect_one_branch_failed(const char *id, const char *failed, const char *late)
{
    expect_status(id, "compensated");
    json_t *h = system_history(&sys, id);
    long long failed_at = event_ts(h, "action_failed", failed);
    long long late_ok = event_ts(h, "action_ok", late);
    long long late_comp = event_ts(h, "compensation_sent", late);
    long long late_comp_ok = event_ts(h, "compensation_ok", late);
    long long flight_comp = event_ts(h, "compensation_sent", "flight");
    cr_assert(failed_at > 0 && late_ok > failed_at,
              "%s failed while %s was in flight (%lld, %lld)", failed, late, failed_at, late_ok);
    cr_assert_geq(late_comp, late_ok, "%s is compensated only after its reply", late);
    cr_assert_geq(flight_comp, late_comp_ok, "the flight after the group");
    cr_assert_eq(event_count(h, "compensation_sent", late), 1);
    cr_assert_eq(event_count(h, "compensation_sent", failed), 0);
    cr_assert_eq(event_count(h, "compensation_sent", "flight"), 1);
    json_decref(h);
    cr_assert_eq(commands_for(id, late, "compensation"), 1, "%s compensated exactly once", late);
    cr_assert_eq(commands_for(id, failed, "compensation"), 0, "%s had nothing to undo", failed);
    cr_assert_eq(commands_for(id, "flight", "compensation"), 1);
    cr_assert_eq(commands_for(id, "confirm", "action"), 0);
    char trail_a[512], trail_b[512];
    snprintf(trail_a, sizeof trail_a,
             "flight/action/1 hotel/action/1 car/action/1 %s/compensation/1 "
             "flight/compensation/1", late);
    snprintf(trail_b, sizeof trail_b,
             "flight/action/1 car/action/1 hotel/action/1 %s/compensation/1 "
             "flight/compensation/1", late);
    expect_trail_one_of(id, trail_a, trail_b);
    char err[512] = "";
    cr_assert(strstr(system_field(&sys, id, "error", err, sizeof err), failed), "error: %s", err);
}

Test(groups, branch_failing_while_sibling_in_flight_compensates_each_completed_branch_once)
{
    start_system(FAIL_RULES, sizeof FAIL_RULES / sizeof *FAIL_RULES);
    start_trip("trip-car-fails");
    start_trip("trip-hotel-fails");

    /* After the car failed and before the hotel answers: compensating, nothing sent yet. */
    cr_assert(system_wait_status(&sys, "trip-car-fails", "compensating", WAIT_MS));
    json_t *car = system_step(&sys, "trip-car-fails", "car");
    json_t *hotel = system_step(&sys, "trip-car-fails", "hotel");
    cr_assert_str_eq(json_string_value(json_object_get(car, "phase")), "failed");
    cr_assert_str_eq(json_string_value(json_object_get(hotel, "phase")), "running",
                     "the hotel is still in flight");
    cr_assert_eq(commands_for("trip-car-fails", "hotel", "compensation"), 0);
    cr_assert_eq(commands_for("trip-car-fails", "flight", "compensation"), 0,
                 "the flight waits for the group");
    json_decref(car);
    json_decref(hotel);

    expect_one_branch_failed("trip-car-fails", "car", "hotel");
    expect_one_branch_failed("trip-hotel-fails", "hotel", "car");
    cr_assert_eq(system_counter(&sys, "trip:compensated") - warm_up_compensated, 2);
}

static const script_rule_t TIMEOUT_RULES[] = {
    {"trip-timeout", "hotel", "action", 0, SCRIPT_SILENT, NULL, 0},
};

Test(groups, branch_timing_out_compensates_it_and_its_completed_sibling)
{
    start_system(TIMEOUT_RULES, sizeof TIMEOUT_RULES / sizeof *TIMEOUT_RULES);
    start_trip("trip-timeout");
    expect_status("trip-timeout", "compensated");

    json_t *h = system_history(&sys, "trip-timeout");
    long long sent = event_ts(h, "action_sent", "hotel");
    long long timed_out = event_ts(h, "action_timed_out", "hotel");
    long long car_ok = event_ts(h, "action_ok", "car");
    cr_assert_geq(timed_out - sent, 2000, "the hotel's 2 s timeout ran out");
    cr_assert(car_ok > 0 && car_ok < timed_out, "the car completed while the hotel hung");
    cr_assert_geq(event_ts(h, "compensation_sent", "car"), timed_out,
                  "nothing is compensated before the hotel timed out");
    cr_assert_geq(event_ts(h, "compensation_sent", "hotel"), timed_out);
    cr_assert_geq(event_ts(h, "compensation_sent", "flight"),
                  event_ts(h, "compensation_ok", "car"));
    cr_assert_geq(event_ts(h, "compensation_sent", "flight"),
                  event_ts(h, "compensation_ok", "hotel"));
    json_decref(h);
    cr_assert_eq(commands_for("trip-timeout", "hotel", "compensation"), 1,
                 "a timed-out branch's effect is unknown: compensated once");
    cr_assert_eq(commands_for("trip-timeout", "car", "compensation"), 1);
    cr_assert_eq(commands_for("trip-timeout", "flight", "compensation"), 1);
    cr_assert_eq(commands_for("trip-timeout", "confirm", "action"), 0);
    json_t *hotel = system_step(&sys, "trip-timeout", "hotel");
    cr_assert(json_is_true(json_object_get(hotel, "action_timed_out")));
    cr_assert_str_eq(json_string_value(json_object_get(hotel, "phase")), "compensated");
    json_decref(hotel);
    char err[512] = "";
    cr_assert(strstr(system_field(&sys, "trip-timeout", "error", err, sizeof err),
                     "step hotel timed out"), "error: %s", err);
}
