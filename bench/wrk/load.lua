-- Load for wrk: one request per call, for the bench runner (bench/run.py).
-- BENCH_MODE=intake: a new complaint of a new customer each time (the worst case for intake:
--   every customer needs a key of their own).
-- BENCH_MODE=evidence: evidence on the complaints listed in BENCH_IDS, round robin from a
--   different start in each thread, so concurrent requests hit distinct complaints.
-- BENCH_MODE=get: GET BENCH_PATH, or each path listed in the file BENCH_PATHS in turn.
-- BENCH_TOKEN: the bearer token. done() prints one JSON line; wrk counts an answer with a
-- status of 400 or more as an error ("non_2xx").
local token = os.getenv("BENCH_TOKEN")
local mode = os.getenv("BENCH_MODE") or "intake"
local threads = {}
local ids = {}
local paths = {}
local counter = 0
local headers = nil

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  headers = {["Authorization"] = "Bearer " .. token}
  if mode ~= "get" then headers["Content-Type"] = "application/json" end
  if mode == "get" and os.getenv("BENCH_PATHS") then
    for line in io.lines(os.getenv("BENCH_PATHS")) do table.insert(paths, line) end
  end
  if mode == "evidence" then
    for line in io.lines(os.getenv("BENCH_IDS")) do table.insert(ids, line) end
    -- Each thread starts in its own part of the list, each run somewhere else again.
    local n = tonumber(os.getenv("BENCH_THREADS") or "1")
    local run = 0
    for c in (os.getenv("BENCH_RUN") or "0"):gmatch("%d") do run = run * 7 + tonumber(c) end
    counter = (tid or 0) * math.floor(#ids / n) + run * 97
  end
end

local intake = '{"channel":"hotline","customer":{"id":"%s","name":"Bench Customer",'
  .. '"phone":"13800000000","email":"bench@example.cn"},"service_number":"13800000000",'
  .. '"business_type":"mobile","category":"billing",'
  .. '"occurred_at":"2026-11-20T08:30:00+08:00","description":"Billed twice for November.",'
  .. '"demand":"Refund the second charge.","reply_channel":"sms"}'
local evidence = '{"kind":"call_record","ref":"CDR-%d","summary":"Call log checked."}'

function request()
  counter = counter + 1
  if mode == "get" then
    if #paths > 0 then return wrk.format("GET", paths[(counter % #paths) + 1], headers) end
    return wrk.format("GET", os.getenv("BENCH_PATH"), headers)
  end
  if mode == "evidence" then
    local id = ids[(counter % #ids) + 1]
    return wrk.format("POST", "/complaints/" .. id .. "/evidence", headers,
      string.format(evidence, counter))
  end
  local customer = string.format("bench-%s-%d-%d", os.getenv("BENCH_RUN") or "0", tid or 0, counter)
  return wrk.format("POST", "/complaints", headers, string.format(intake, customer))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,'
    .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
