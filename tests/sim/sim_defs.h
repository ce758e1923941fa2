/* sim_defs.h - the saga definitions the simulation runs, as strings (docs/simulation.md).
 *
 * Three shapes that between them use every feature the state machine has: a sequential
 * saga that stops on a failed compensation and has a read-only step; a five-step one that
 * continues past a failed compensation, has a step that is not compensated on timeout and
 * a step that never retries; and one with a parallel group whose first step's compensation
 * needs its own output (as sagas/trip-booking.json does). Timeouts are short so a run takes
 * few virtual seconds. */
#ifndef SAGA_SIM_DEFS_H
#define SAGA_SIM_DEFS_H

static const char SIM_DEF_ORDER[] =
    "{\"name\": \"order\", \"version\": 1, \"deadline_ms\": 2500,"
    " \"defaults\": {\"timeout_ms\": 120,"
    "   \"retry\": {\"max_attempts\": 3, \"initial_backoff_ms\": 20, \"max_backoff_ms\": 200,"
    "             \"multiplier\": 2.0, \"jitter\": 0.3},"
    "   \"compensation\": {\"timeout_ms\": 150, \"retry\": {\"max_attempts\": 4,"
    "     \"initial_backoff_ms\": 20, \"max_backoff_ms\": 200, \"multiplier\": 2.0, \"jitter\": 0.3}}},"
    " \"steps\": ["
    "  {\"name\": \"reserve\", \"topic\": \"inventory\","
    "   \"action\": {\"command\": \"inventory.reserve\", \"payload\": {\"amount\": \"{{input.amount}}\"}},"
    "   \"compensation\": {\"command\": \"inventory.release\", \"payload\": {\"order\": \"{{saga.id}}\"}}},"
    "  {\"name\": \"charge\", \"topic\": \"payment\","
    "   \"action\": {\"command\": \"payment.charge\", \"payload\": {\"res\": \"{{steps.reserve.output.id}}\"}},"
    "   \"compensation\": {\"command\": \"payment.refund\", \"payload\": {\"charge\": \"{{steps.charge.output.id?}}\"}}},"
    "  {\"name\": \"notify\", \"topic\": \"mail\","
    "   \"action\": {\"command\": \"mail.send\", \"payload\": {\"pay\": \"{{steps.charge.output.id}}\"}},"
    "   \"compensation\": \"none\"}"
    " ]}";

static const char SIM_DEF_TRANSFER[] =
    "{\"name\": \"transfer\", \"version\": 1, \"on_compensation_failure\": \"continue\","
    " \"defaults\": {\"timeout_ms\": 100,"
    "   \"retry\": {\"max_attempts\": 4, \"initial_backoff_ms\": 10, \"max_backoff_ms\": 80,"
    "             \"multiplier\": 1.5, \"jitter\": 0.5},"
    "   \"compensation\": {\"timeout_ms\": 100, \"retry\": {\"max_attempts\": 3,"
    "     \"initial_backoff_ms\": 30, \"max_backoff_ms\": 90, \"multiplier\": 3.0, \"jitter\": 0}}},"
    " \"steps\": ["
    "  {\"name\": \"check\", \"topic\": \"risk\","
    "   \"action\": {\"command\": \"risk.check\", \"payload\": {\"amount\": \"{{input.amount}}\"}},"
    "   \"compensation\": \"none\"},"
    "  {\"name\": \"debit\", \"topic\": \"ledger\","
    "   \"action\": {\"command\": \"ledger.debit\", \"payload\": {\"amount\": \"{{input.amount}}\"}},"
    "   \"compensation\": {\"command\": \"ledger.credit\", \"payload\": {\"amount\": \"{{input.amount}}\"},"
    "     \"retry\": {\"max_attempts\": 6}}},"
    "  {\"name\": \"fx\", \"topic\": \"fx\", \"compensate_on_timeout\": false,"
    "   \"action\": {\"command\": \"fx.quote\", \"payload\": {\"debit\": \"{{steps.debit.output.id}}\"},"
    "     \"retry\": {\"max_attempts\": 1}},"
    "   \"compensation\": {\"command\": \"fx.release\", \"payload\": {\"q\": \"{{steps.fx.output.id?}}\"}}},"
    "  {\"name\": \"credit\", \"topic\": \"ledger\","
    "   \"action\": {\"command\": \"ledger.credit\", \"payload\": {\"fx\": \"{{steps.fx.output.id}}\"}},"
    "   \"compensation\": {\"command\": \"ledger.debit\", \"payload\": {\"amount\": \"{{input.amount}}\"}}},"
    "  {\"name\": \"receipt\", \"topic\": \"mail\","
    "   \"action\": {\"command\": \"mail.send\", \"payload\": {\"c\": \"{{steps.credit.output.id}}\"}},"
    "   \"compensation\": {\"command\": \"mail.retract\", \"payload\": {}}}"
    " ]}";

static const char SIM_DEF_TRIP[] =
    "{\"name\": \"trip\", \"version\": 1, \"deadline_ms\": 3000,"
    " \"defaults\": {\"timeout_ms\": 150,"
    "   \"retry\": {\"max_attempts\": 2, \"initial_backoff_ms\": 30, \"max_backoff_ms\": 60,"
    "             \"multiplier\": 2.0, \"jitter\": 0.1},"
    "   \"compensation\": {\"timeout_ms\": 120, \"retry\": {\"max_attempts\": 5,"
    "     \"initial_backoff_ms\": 15, \"max_backoff_ms\": 150, \"multiplier\": 2.0, \"jitter\": 0.2}}},"
    " \"steps\": ["
    "  {\"name\": \"flight\", \"topic\": \"flights\","
    "   \"action\": {\"command\": \"flight.book\", \"payload\": {\"amount\": \"{{input.amount}}\"}},"
    "   \"compensation\": {\"command\": \"flight.cancel\", \"payload\": {\"booking\": \"{{steps.flight.output.id}}\"}}},"
    "  {\"name\": \"stay\", \"parallel\": ["
    "    {\"name\": \"hotel\", \"topic\": \"hotels\","
    "     \"action\": {\"command\": \"hotel.book\", \"payload\": {\"f\": \"{{steps.flight.output.id}}\"}},"
    "     \"compensation\": {\"command\": \"hotel.cancel\", \"payload\": {\"h\": \"{{steps.hotel.output.id?}}\"}}},"
    "    {\"name\": \"car\", \"topic\": \"cars\","
    "     \"action\": {\"command\": \"car.rent\", \"payload\": {\"f\": \"{{steps.flight.output.id}}\"}},"
    "     \"compensation\": {\"command\": \"car.return\", \"payload\": {}}},"
    "    {\"name\": \"insure\", \"topic\": \"insurance\", \"compensate_on_timeout\": false,"
    "     \"action\": {\"command\": \"insurance.buy\", \"payload\": {}},"
    "     \"compensation\": {\"command\": \"insurance.cancel\", \"payload\": {}}}"
    "  ]},"
    "  {\"name\": \"confirm\", \"topic\": \"mail\","
    "   \"action\": {\"command\": \"mail.send\", \"payload\": {\"h\": \"{{steps.hotel.output.id}}\","
    "     \"c\": \"{{steps.car.output.id}}\"}},"
    "   \"compensation\": {\"command\": \"mail.retract\", \"payload\": {}}}"
    " ]}";

#endif
