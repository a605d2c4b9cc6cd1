-- Shared by the senders benchmark's wrk scripts (bench/senders.py): thread numbering, status
-- and `accepted` counting, exact per-request latency, pacing, and the JSON line that
-- bench/senders.py reads from done().
--
-- Configuration comes from environment variables (bench/senders.py sets them), because each
-- wrk thread runs its own Lua state and reads them in init():
--   SENDERS_COUNT=1      count answers by status and sum `accepted` (defines response(); wrk
--                        is somewhat slower with it, so it stays off where rates are highest)
--   SENDERS_EXACT=1      time every request in Lua; only valid with one connection per thread,
--                        where requests and answers alternate
--   SENDERS_PERIOD_MS=x  pace: each thread sends one request every x ms (defines delay());
--                        SENDERS_THREADS (wrk's --threads) staggers the threads' schedules

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } senders_timespec;
int clock_gettime(int clk_id, senders_timespec *tp);
]])

local M = {}
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("senders_timespec")

-- Milliseconds on the monotonic clock (LuaJIT has no wall clock finer than a second).
function M.now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

-- -- main state: setup() numbers the threads, done() reports --------------------------------

local threads = {}

function M.setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

local function encode(value)
  local kind = type(value)
  if kind == "number" then
    if value ~= value or value == math.huge or value == -math.huge then
      return "null"
    end
    return string.format("%.17g", value)
  elseif kind == "string" then
    return '"' .. value:gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
    end) .. '"'
  elseif kind == "table" then
    local parts = {}
    for k, v in pairs(value) do
      table.insert(parts, encode(tostring(k)) .. ":" .. encode(v))
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif kind == "boolean" then
    return tostring(value)
  end
  return "null"
end

local function encode_list(list)
  local parts = {}
  for i = 1, #list do
    parts[i] = string.format("%.3f", list[i])
  end
  return "[" .. table.concat(parts, ",") .. "]"
end

-- One line, "SENDERS_RESULT {json}", after wrk's own report: wrk's figures (its latency is
-- in microseconds and includes its correction for coordinated omission), and each thread's
-- counters and, with SENDERS_EXACT, its measured latencies in milliseconds.
function M.done(summary, latency, requests)
  local per_thread = {}
  local samples = {}
  for _, thread in ipairs(threads) do
    table.insert(per_thread, {
      issued = thread:get("issued") or 0,
      accepted = thread:get("accepted") or 0,
      statuses = thread:get("statuses") or {},
    })
    for _, ms in ipairs(thread:get("samples") or {}) do
      table.insert(samples, ms)
    end
  end
  local out = {
    duration_us = summary.duration,
    requests = summary.requests,
    bytes = summary.bytes,
    errors = summary.errors,
    latency_us = {
      min = latency.min,
      mean = latency.mean,
      max = latency.max,
      p50 = latency:percentile(50),
      p90 = latency:percentile(90),
      p99 = latency:percentile(99),
      p999 = latency:percentile(99.9),
    },
  }
  local threads_json = {}
  for i, t in ipairs(per_thread) do
    threads_json[i] = encode(t)
  end
  local text = encode(out)
  text = text:sub(1, -2)
    .. ',"threads":['
    .. table.concat(threads_json, ",")
    .. '],"samples_ms":'
    .. encode_list(samples)
    .. "}"
  io.write("SENDERS_RESULT " .. text .. "\n")
end

-- -- thread states: counters, response(), delay() --------------------------------------------

local started_ms = nil
local exact = false

-- Call at the end of a script's init(): sets the counters thread:get() reads in done(), and
-- defines response() and delay() as the environment asks (wrk looks for them after init()).
function M.init_thread()
  issued = 0
  accepted = 0
  statuses = {}
  samples = {}
  exact = os.getenv("SENDERS_EXACT") == "1"
  if os.getenv("SENDERS_COUNT") == "1" or exact then
    response = M.response
  end
  local period = tonumber(os.getenv("SENDERS_PERIOD_MS") or "")
  if period and period > 0 then
    local threads_total = tonumber(os.getenv("SENDERS_THREADS") or "1")
    delay = M.pacer(period, (thread_number - 1) * period / threads_total)
  end
end

-- Call from request(), just before returning it: wrk starts its own clock right after.
function M.sending()
  issued = issued + 1
  if exact then
    started_ms = M.now_ms()
  end
end

function M.response(status, headers, body)
  if exact and started_ms then
    samples[#samples + 1] = M.now_ms() - started_ms
    started_ms = nil
  end
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 then
    local n = body:match('"accepted":%s*(%d+)')
    if n then
      accepted = accepted + tonumber(n)
    end
  end
end

-- A delay() that sends one request every period_ms from this thread, on a fixed schedule
-- (the first after offset_ms), whichever of its connections is free: unlike a fixed delay
-- after each answer, the rate does not drop as latency grows. A thread more than one period
-- behind drops the debt rather than bursting to catch up; the achieved rate is reported.
function M.pacer(period_ms, offset_ms)
  local due = nil
  return function()
    local now = M.now_ms()
    if due == nil then
      due = now + offset_ms
    elseif due < now - period_ms then
      due = now
    end
    local wait = due - now
    due = due + period_ms
    if wait <= 0 then
      return 0
    end
    return math.floor(wait + 0.5)
  end
end

return M
