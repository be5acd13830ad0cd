-- wrk script for the webproxy benchmark.
--
-- BENCH_TARGET, if set, replaces the request-target: an absolute-form URL
-- (http://host:port/path) makes wrk talk to a forward proxy, since wrk has no
-- proxy support of its own.  BENCH_HOST sets the Host header to the origin's.
-- done() prints one machine-readable line; latencies are in microseconds.

local target = os.getenv("BENCH_TARGET")
local host = os.getenv("BENCH_HOST")
if target and target ~= "" then
   wrk.path = target
end
if host and host ~= "" then
   wrk.headers["Host"] = host
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      "BENCH_RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d "
         .. "write=%d status=%d timeout=%d p50_us=%.1f p99_us=%.1f "
         .. "mean_us=%.1f max_us=%.1f\n",
      summary.requests, summary.duration, summary.bytes,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout,
      latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
