/* shipping-service.c - the example shipping participant: shipping.schedule books a
 * shipment, shipping.cancel cancels it. Recorded in the Redis ledger ledger:{shipping}:*
 * atomically with the SDK's dedup record (docs/participants.md). */
#include "example_service.h"

#include <stdio.h>
#include <string.h>

/* payload {order_id?, address} -> output {shipment_id} */
static void shipping_schedule(const saga_command_t *cmd, saga_result_t *res, void *opaque)
{
    const example_service_t *svc = opaque;
    json_t *payload = saga_command_payload(cmd);
    json_t *address = json_object_get(payload, "address");
    if (!(json_is_string(address) && json_string_length(address) > 0) && !json_is_object(address)) {
        saga_result_fail(res, "payload.address: expected a non-empty string or an object");
        return;
    }
    char id[64];
    example_id_make(id, sizeof id, "s-", cmd);
    json_t *details = json_pack("{s:s, s:O}", "shipment_id", id, "address", address);
    json_t *order = json_object_get(payload, "order_id");
    if (details && order)
        json_object_set(details, "order_id", order);
    int rc = example_ledger_add(res, svc, cmd, "schedule", "scheduled", 1, details);
    json_decref(details);
    if (rc != 0) {
        saga_result_retry(res, "cannot build the ledger entry");
        return;
    }
    saga_result_ok(res, json_pack("{s:s}", "shipment_id", id));
}

/* payload {shipment_id}: cancels the shipment the action booked. */
static void shipping_cancel(const saga_command_t *cmd, saga_result_t *res, void *opaque)
{
    const example_service_t *svc = opaque;
    json_t *id = json_object_get(saga_command_action_output(cmd), "shipment_id");
    if (!json_is_string(id)) {
        saga_result_fail(res, "the schedule's recorded output lacks shipment_id");
        return;
    }
    json_t *asked = json_object_get(saga_command_payload(cmd), "shipment_id");
    if (json_is_string(asked) && strcmp(json_string_value(asked), json_string_value(id)) != 0) {
        char why[256];
        snprintf(why, sizeof why, "payload.shipment_id %s is not this step's shipment %s", json_string_value(asked),
                 json_string_value(id));
        saga_result_fail(res, why);
        return;
    }
    json_t *details = json_pack("{s:O}", "shipment_id", id);
    int rc = example_ledger_add(res, svc, cmd, "cancel", "scheduled", -1, details);
    json_decref(details);
    if (rc != 0) {
        saga_result_retry(res, "cannot build the ledger entry");
        return;
    }
    saga_result_ok(res, json_pack("{s:O, s:b}", "shipment_id", id, "cancelled", 1));
}

int main(int argc, char **argv)
{
    static const example_service_t svc = {
        .name = "shipping",
        .description = "Example saga participant: schedules and cancels shipments (shipping.schedule, shipping.cancel).",
        .handlers = {{"shipping.schedule", SAGA_KIND_ACTION, shipping_schedule},
                     {"shipping.cancel", SAGA_KIND_COMPENSATION, shipping_cancel}},
        .nhandlers = 2,
    };
    return example_service_main(&svc, argc, argv);
}
