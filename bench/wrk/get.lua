-- GET load for wrk on one path (BENCH_PATH), with the bearer token BENCH_TOKEN.
local headers = nil

function init(args)
  headers = {["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")}
end

function request()
  return wrk.format("GET", os.getenv("BENCH_PATH"), headers)
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
