/* payment-service.c - the example payment participant: payment.charge takes an amount,
 * payment.refund gives it back. Amounts are kept in integer cents in the Redis ledger
 * ledger:{payment}:*, written atomically with the SDK's dedup record
 * (docs/participants.md). */
#include "example_service.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PAYMENT_MAX_AMOUNT 1e12
#define PAYMENT_CENTS 100.0

/* payload {order_id?, amount} -> output {payment_id, amount, amount_cents} */
static void payment_charge(const saga_command_t *cmd, saga_result_t *res, void *opaque)
{
    const example_service_t *svc = opaque;
    json_t *payload = saga_command_payload(cmd);
    double amount;
    if (example_payload_number(payload, "amount", &amount) != 0 || amount <= 0 || amount > PAYMENT_MAX_AMOUNT) {
        saga_result_fail(res, "payload.amount: expected a number > 0");
        return;
    }
    long long cents = llround(amount * PAYMENT_CENTS);
    char id[64];
    example_id_make(id, sizeof id, "p-", cmd);
    json_t *details = json_pack("{s:s}", "payment_id", id);
    json_t *order = json_object_get(payload, "order_id");
    if (details && order)
        json_object_set(details, "order_id", order);
    int rc = example_ledger_add(res, svc, cmd, "charge", "charged_cents", cents, details);
    json_decref(details);
    if (rc != 0) {
        saga_result_retry(res, "cannot build the ledger entry");
        return;
    }
    saga_result_ok(res, json_pack("{s:s, s:f, s:I}", "payment_id", id, "amount", (double)cents / PAYMENT_CENTS,
                                  "amount_cents", (json_int_t)cents));
}

/* payload {payment_id, amount?}: refunds exactly what the charge recorded. */
static void payment_refund(const saga_command_t *cmd, saga_result_t *res, void *opaque)
{
    const example_service_t *svc = opaque;
    json_t *done = saga_command_action_output(cmd);
    json_t *id = json_object_get(done, "payment_id");
    long long cents;
    if (!json_is_string(id) || example_payload_int(done, "amount_cents", &cents) != 0) {
        saga_result_fail(res, "the charge's recorded output lacks payment_id or amount_cents");
        return;
    }
    json_t *asked = json_object_get(saga_command_payload(cmd), "payment_id");
    if (json_is_string(asked) && strcmp(json_string_value(asked), json_string_value(id)) != 0) {
        char why[256];
        snprintf(why, sizeof why, "payload.payment_id %s is not this step's payment %s", json_string_value(asked),
                 json_string_value(id));
        saga_result_fail(res, why);
        return;
    }
    char rid[64];
    example_id_make(rid, sizeof rid, "rf-", cmd);
    json_t *details = json_pack("{s:O, s:s}", "payment_id", id, "refund_id", rid);
    int rc = example_ledger_add(res, svc, cmd, "refund", "charged_cents", -cents, details);
    json_decref(details);
    if (rc != 0) {
        saga_result_retry(res, "cannot build the ledger entry");
        return;
    }
    saga_result_ok(res, json_pack("{s:s, s:O, s:f}", "refund_id", rid, "payment_id", id, "amount",
                                  (double)cents / PAYMENT_CENTS));
}

int main(int argc, char **argv)
{
    static const example_service_t svc = {
        .name = "payment",
        .description = "Example saga participant: charges and refunds (payment.charge, payment.refund).",
        .handlers = {{"payment.charge", SAGA_KIND_ACTION, payment_charge},
                     {"payment.refund", SAGA_KIND_COMPENSATION, payment_refund}},
        .nhandlers = 2,
    };
    return example_service_main(&svc, argc, argv);
}
