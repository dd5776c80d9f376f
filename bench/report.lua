-- Shared by the wrk scripts: prints one machine-readable line that bench/run parses.
-- Latencies are in microseconds; `status` counts responses of 400 and above.

function report(summary, latency, extra)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d max_us=%d " ..
      "connect=%d read=%d write=%d status=%d timeout=%d%s\n",
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout, extra or ""))
end
