/* inventory-service.c - the example inventory participant: inventory.reserve holds qty
 * units of a sku, inventory.release gives them back. Both are recorded in the Redis ledger
 * ledger:{inventory}:* atomically with the SDK's dedup record (docs/participants.md). */
#include "example_service.h"

#include <stdio.h>
#include <string.h>

#define INVENTORY_MAX_QTY 1000000000LL

/* payload {order_id?, sku, qty} -> output {reservation_id, sku, qty} */
static void inventory_reserve(const saga_command_t *cmd, saga_result_t *res, void *opaque)
{
    const example_service_t *svc = opaque;
    json_t *payload = saga_command_payload(cmd);
    json_t *sku = json_object_get(payload, "sku");
    long long qty;
    if (!json_is_string(sku) || json_string_length(sku) == 0) {
        saga_result_fail(res, "payload.sku: expected a non-empty string");
        return;
    }
    if (example_payload_int(payload, "qty", &qty) != 0 || qty < 1 || qty > INVENTORY_MAX_QTY) {
        saga_result_fail(res, "payload.qty: expected an integer >= 1");
        return;
    }
    char id[64];
    example_id_make(id, sizeof id, "r-", cmd);
    json_t *details = json_pack("{s:s}", "reservation_id", id);
    json_t *order = json_object_get(payload, "order_id");
    if (details && order)
        json_object_set(details, "order_id", order);
    int rc = example_ledger_add(res, svc, cmd, "reserve", json_string_value(sku), qty, details);
    json_decref(details);
    if (rc != 0) {
        saga_result_retry(res, "cannot build the ledger entry");
        return;
    }
    saga_result_ok(res, json_pack("{s:s, s:s, s:I}", "reservation_id", id, "sku", json_string_value(sku), "qty",
                                  (json_int_t)qty));
}

/* payload {reservation_id, ...}: undoes exactly what the reservation recorded. */
static void inventory_release(const saga_command_t *cmd, saga_result_t *res, void *opaque)
{
    const example_service_t *svc = opaque;
    json_t *done = saga_command_action_output(cmd);
    json_t *sku = json_object_get(done, "sku");
    json_t *id = json_object_get(done, "reservation_id");
    long long qty;
    if (!json_is_string(sku) || !json_is_string(id) || example_payload_int(done, "qty", &qty) != 0) {
        saga_result_fail(res, "the reservation's recorded output lacks sku, qty or reservation_id");
        return;
    }
    json_t *asked = json_object_get(saga_command_payload(cmd), "reservation_id");
    if (json_is_string(asked) && strcmp(json_string_value(asked), json_string_value(id)) != 0) {
        char why[256];
        snprintf(why, sizeof why, "payload.reservation_id %s is not this step's reservation %s",
                 json_string_value(asked), json_string_value(id));
        saga_result_fail(res, why);
        return;
    }
    json_t *details = json_pack("{s:O}", "reservation_id", id);
    int rc = example_ledger_add(res, svc, cmd, "release", json_string_value(sku), -qty, details);
    json_decref(details);
    if (rc != 0) {
        saga_result_retry(res, "cannot build the ledger entry");
        return;
    }
    saga_result_ok(res, json_pack("{s:O, s:I}", "reservation_id", id, "released", (json_int_t)qty));
}

int main(int argc, char **argv)
{
    static const example_service_t svc = {
        .name = "inventory",
        .description = "Example saga participant: reserves and releases stock (inventory.reserve, inventory.release).",
        .handlers = {{"inventory.reserve", SAGA_KIND_ACTION, inventory_reserve},
                     {"inventory.release", SAGA_KIND_COMPENSATION, inventory_release}},
        .nhandlers = 2,
    };
    return example_service_main(&svc, argc, argv);
}
