"""series chunks: observations packed per series and span instead of one row per point

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:30:00.000000

The layout is described in batchsvc/store/series.py. The upgrade carries every row of
`series_points` over in SQL: each series gets its id and span, each point its code (the common
UTC forms of its time text, else the text kept in `extras`; its value as float, int or other),
and the points are grouped into chunks. The downgrade renders every chunk back into one
`series_points` row per observation, with the observation as it was sent.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The point-code arithmetic of store/series.py at this revision: value kind + 3 * time kind (+ 18 *
# offset index, which the upgrade never needs: it only recognises UTC forms).
_UPGRADE_SERIES = r"""
INSERT INTO tenants (tenant) SELECT DISTINCT tenant FROM series_points ORDER BY 1;
INSERT INTO series (tenant_key, environment, object_id, property, span)
SELECT t.key, p.environment, p.object_id, p.property,
       CASE WHEN p.n = 1 THEN CASE WHEN p.midnight OR p.dated THEN 'M' ELSE 'D' END
            WHEN p.gap < interval '2 hours' THEN 'D' WHEN p.gap < interval '5 days' THEN 'M' ELSE 'Y' END
FROM (SELECT tenant, environment, object_id, property, count(*) AS n,
             percentile_disc(0.5) WITHIN GROUP (ORDER BY gap) AS gap,
             bool_and(time = date_trunc('day', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS midnight,
             bool_and(point->>'time' ~ '^\d{4}-\d{2}-\d{2}$') AS dated
      FROM (SELECT tenant, environment, object_id, property, time, point,
                   time - lag(time) OVER (PARTITION BY tenant, environment, object_id, property ORDER BY time) AS gap
            FROM series_points) AS g
      GROUP BY 1, 2, 3, 4) AS p
JOIN tenants t ON t.tenant = p.tenant
ORDER BY 1, 2, 3, 4;
INSERT INTO series_chunks (tenant_key, series_id, day, times, vals, codes, extras)
SELECT tenant_key, series_id, day, array_agg(t ORDER BY t), array_agg(val ORDER BY t),
       CASE WHEN min(code) = max(code) THEN ARRAY[min(code)] ELSE array_agg(code ORDER BY t) END,
       jsonb_object_agg(t::text, extra) FILTER (WHERE extra IS NOT NULL)
FROM (SELECT tenant_key, series_id, day, t, val, (value_kind + 3 * time_kind)::int2 AS code,
             NULLIF(CASE WHEN time_kind = 5 AND value_kind = 2 THEN point
                         WHEN time_kind = 5 THEN point - 'value'
                         WHEN value_kind = 2 THEN point - 'time'
                         ELSE point - 'time' - 'value' END, '{}') AS extra
      FROM (SELECT s.tenant_key, s.id AS series_id, p.point,
                   CASE s.span WHEN 'D' THEN u::date WHEN 'M' THEN date_trunc('month', u)::date
                        ELSE date_trunc('year', u)::date END AS day,
                   extract(epoch FROM date_trunc('second', u))::int8 * 1000000
                       + extract(microseconds FROM u)::int8 % 1000000 AS t,
                   CASE WHEN v.kind < 2 THEN (p.point->>'value')::float8 END AS val,
                   v.kind AS value_kind,
                   CASE WHEN jsonb_typeof(p.point->'time') IS DISTINCT FROM 'string' THEN 5
                        WHEN p.point->>'time' = clock || frac || 'Z' THEN 0
                        WHEN p.point->>'time' = clock || frac || '+00:00' THEN 1
                        WHEN p.point->>'time' = clock || frac THEN 2
                        WHEN p.point->>'time' = to_char(u, 'YYYY-MM-DD') AND u = date_trunc('day', u) THEN 3
                        WHEN p.point->>'time' = clock || to_char(u, '.MS') || 'Z' THEN 4
                        ELSE 5 END AS time_kind
            FROM series_points p
            JOIN tenants tn ON tn.tenant = p.tenant
            JOIN series s ON s.tenant_key = tn.key AND s.environment = p.environment
                         AND s.object_id = p.object_id AND s.property = p.property
            CROSS JOIN LATERAL (SELECT p.time AT TIME ZONE 'UTC' AS u) AS w
            CROSS JOIN LATERAL (SELECT to_char(w.u, 'YYYY-MM-DD"T"HH24:MI:SS') AS clock,
                                       CASE WHEN extract(microseconds FROM w.u)::int8 % 1000000 = 0 THEN ''
                                            ELSE to_char(w.u, '.US') END AS frac) AS r
            CROSS JOIN LATERAL (
                SELECT CASE
                    WHEN jsonb_typeof(p.point->'value') IS DISTINCT FROM 'number' THEN 2
                    WHEN p.point->>'value' ~ '^-?\d+$' THEN
                        CASE WHEN abs((p.point->>'value')::numeric) <= 9007199254740992 THEN 1 ELSE 2 END
                    WHEN (p.point->>'value')::numeric = 0
                         OR abs((p.point->>'value')::numeric) BETWEEN 1e-300 AND 1e300 THEN 0
                    ELSE 2 END AS kind) AS v) AS x) AS y
GROUP BY tenant_key, series_id, day
ORDER BY tenant_key, series_id, day;
"""

# Renders each point as store/series.py does: its time text from its code (kind, offset), its
# value as the float or integer it was, then its extra fields.
_DOWNGRADE_SERIES = r"""
INSERT INTO series_points (tenant, environment, object_id, property, time, point)
SELECT tn.tenant, s.environment, s.object_id, s.property, w.instant,
       CASE WHEN d.time_kind = 5 THEN '{}'::jsonb
            ELSE jsonb_build_object('time', CASE d.time_kind
                WHEN 3 THEN to_char(w.local, 'YYYY-MM-DD')
                WHEN 4 THEN to_char(w.local, 'YYYY-MM-DD"T"HH24:MI:SS.MS') || 'Z'
                ELSE to_char(w.local, 'YYYY-MM-DD"T"HH24:MI:SS')
                     || CASE WHEN extract(microseconds FROM w.local)::int8 % 1000000 = 0 THEN ''
                             ELSE to_char(w.local, '.US') END
                     || CASE d.time_kind WHEN 0 THEN 'Z' WHEN 2 THEN ''
                             ELSE CASE WHEN d.offset_us < 0 THEN '-' ELSE '+' END
                                  || lpad((abs(d.offset_us) / 3600000000)::text, 2, '0') || ':'
                                  || lpad((abs(d.offset_us) / 60000000 % 60)::text, 2, '0') END
                END) END
       || CASE d.value_kind
            WHEN 0 THEN jsonb_build_object('value', CASE WHEN u.v::text ~ '^-?\d+$' THEN (u.v::text || '.0')::jsonb
                                                        ELSE to_jsonb(u.v) END)
            WHEN 1 THEN jsonb_build_object('value', u.v::int8)
            ELSE '{}'::jsonb END
       || coalesce(c.extras -> u.t::text, '{}'::jsonb)
FROM series_chunks c
JOIN series s ON s.tenant_key = c.tenant_key AND s.id = c.series_id
JOIN tenants tn ON tn.key = c.tenant_key
CROSS JOIN LATERAL unnest(c.times, c.vals, CASE WHEN cardinality(c.codes) = 1
                                             THEN array_fill(c.codes[1], ARRAY[cardinality(c.times)])
                                             ELSE c.codes END) AS u(t, v, code)
CROSS JOIN LATERAL (SELECT u.code % 3 AS value_kind, u.code / 3 % 6 AS time_kind,
                           (CASE WHEN u.code / 18 <= 64 THEN u.code / 18 ELSE u.code / 18 - 129 END)::int8
                               * 900000000 AS offset_us) AS d
CROSS JOIN LATERAL (SELECT 'epoch'::timestamptz + (u.t / 1000000) * interval '1 second'
                           + (u.t % 1000000) * interval '1 microsecond' AS instant) AS w0
CROSS JOIN LATERAL (SELECT w0.instant,
                           (w0.instant + (d.offset_us / 1000000) * interval '1 second') AT TIME ZONE 'UTC' AS local) AS w
"""


def _lz4_available() -> bool:
    """Whether this server was built with lz4, TOAST's faster compression."""
    found = op.get_bind().execute(
        sa.text("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
    )
    return bool(found.scalar())


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("key", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_tenants")),
        sa.UniqueConstraint("key", name=op.f("uq_tenants_key")),
    )
    op.create_table(
        "series",
        sa.Column("tenant_key", sa.Integer(), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=256), nullable=False),
        sa.Column("property", sa.Text(), nullable=False),
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("span", sa.String(length=1), nullable=False),
        sa.PrimaryKeyConstraint("tenant_key", "environment", "object_id", "property", name=op.f("pk_series")),
        sa.UniqueConstraint("tenant_key", "id", name=op.f("uq_series_tenant_key_id")),
    )
    op.create_table(
        "series_chunks",
        sa.Column("tenant_key", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("times", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("vals", postgresql.ARRAY(sa.Double()), nullable=False),
        sa.Column("codes", postgresql.ARRAY(sa.SmallInteger()), nullable=False),
        sa.Column("extras", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("tenant_key", "series_id", "day", name=op.f("pk_series_chunks")),
    )
    if _lz4_available():
        # lz4 packs the regular `times` arrays at a fraction of pglz's CPU cost (the default).
        op.execute(
            "ALTER TABLE series_chunks ALTER COLUMN times SET COMPRESSION lz4, "
            "ALTER COLUMN vals SET COMPRESSION lz4, ALTER COLUMN codes SET COMPRESSION lz4, "
            "ALTER COLUMN extras SET COMPRESSION lz4"
        )
    op.execute(_UPGRADE_SERIES)
    op.drop_table("series_points")


def downgrade() -> None:
    op.create_table(
        "series_points",
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("environment", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=256), nullable=False),
        sa.Column("property", sa.Text(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("point", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant", "environment", "object_id", "property", "time", name=op.f("pk_series_points")
        ),
    )
    op.execute(_DOWNGRADE_SERIES)
    op.drop_table("series_chunks")
    op.drop_table("series")
    op.drop_table("tenants")
