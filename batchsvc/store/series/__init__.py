"""Time series storage: observations packed into chunks of parallel arrays, one row per series and span.

Layout (tables `tenants`, `series`, `series_chunks`, see models.py):

- A series (tenant, environment, object, property) has a compact integer id and a *span*: the
  time one chunk holds, a UTC day ('D'), month ('M') or year ('Y'). The span is chosen from the
  points the series is first written with (`pick_span`) and kept until the series is wiped.
- A chunk row holds the observations of one series within one span: `times` (int8[],
  microseconds since 1970-01-01 UTC, ascending), `vals` (float8[], NULL where the value is not a
  float64), `codes` (int2[]: per point, how its time was written and how its value is typed; a
  single code when every point of the chunk shares it) and `extras` (JSONB, NULL unless some
  observation carries more than a time and a number: `{"<times[i]>": {other fields}}`).
- A point's code is `value kind + 3 * time kind + 18 * offset index`: value kinds float, int
  (an integer of at most 2**53 in magnitude, read back as an integer) and other (not in `vals`:
  in `extras`, or absent); time kinds `...Z`, `...±HH:MM`, naive `YYYY-MM-DDTHH:MM:SS[.ffffff]`,
  a date `YYYY-MM-DD`, `....fffZ` and other (the text kept in `extras`); the offset (of the
  written form from UTC) in quarter hours, -64..64, index `q mod 129`. A time is only given a
  kind when rendering the instant in that kind gives back the exact text sent, so every
  observation reads back as sent: same time text, same float64, same other fields.

History (SPEC §12): `stamps` (int8[], one per point, or one when all share it, like `codes`)
holds the stamp of the batch that wrote each point as it is (store/stamps.py; 0: written before
history was kept). A point a batch replaces or removes goes to `series_versions`, one row per
chunk and superseding stamp (`superseded`, `superseded_at`), in the chunk layout, holding only
the points that changed, each with the stamp that had made it. So appending stores no history,
and correcting 10 points of a day archives those 10 points.

Writes: one round trip makes sure the batch's series exist (ids, spans) and reads the stored
chunks its points fall in (new days: nothing to read). The merge runs in Python, point by point
by time: a point equal to the stored one at its time (same time code, value and other fields) is
unchanged (kept as stored, with its stamp, and reported in `DataChanges.kept`); a different one
is updated (stamped, the old one archived); one at a new time is created. A chunk with no change
is not written at all (no new tuple); a changed one is written whole, with its archived points,
in deferred statements, chunks in (series, day) order. `_replace` series and the series of
replaced objects are replaced: their chunks that no incoming point falls in are archived whole
and deleted in SQL (in the same round trip), the others merged as a replace (stored points not
re-sent are removed and archived). Series rows, and so ids and spans, are kept: as-of reads of
old points need them. Writers of one series are serialised by the object row that every data
write of a batch upserts (or a rollback locks) first, so each merge sees the chunk as the
previous writer committed it.

As-of reads take, per point, the state that was current at the instant: made by then (its
stamp's batch time; stamp 0 and pruned stamps before any instant) and superseded after it.

The change log (`batch_changes`, kind "points") names the chunks a transaction changed,
`<series id>/<first day>` (`chunk_key`), in `updated`; undo_items finds the points from there.
"""

from batchsvc.store.series.codec import T_DATE, T_NAIVE, V_FLOAT, encode_code, encode_series, observations
from batchsvc.store.series.reads import read_points
from batchsvc.store.series.undo import apply_undo, data_writers, undo_items
from batchsvc.store.series.writes import write_series

__all__ = [
    "T_DATE",
    "T_NAIVE",
    "V_FLOAT",
    "apply_undo",
    "data_writers",
    "encode_code",
    "encode_series",
    "observations",
    "read_points",
    "undo_items",
    "write_series",
]
