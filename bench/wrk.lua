-- wrk script for scripts/bench. Reads tokens (one a line) from $BENCH_TOKENS:
--   no file or empty file -> requests without a token;
--   one token             -> the same token on every request (a static request: cheapest for wrk);
--   many tokens           -> a different token per request, cycled; wrk thread k of T sends
--                            tokens k, k+T, k+2T, ... so that threads never send the same token
--                            at the same moment (which would turn misses into cache hits).
-- $BENCH_PART picks which tokens of a many-token file are cycled: "warmup" = the last quarter,
-- "measure" (default) = the first three quarters, so the measured run never sends a token that
-- the warm-up just put in a cache.

local path = os.getenv("BENCH_TOKENS")
local tokens = {}
if path and path ~= "" then
  for line in io.lines(path) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
end

local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1") or 1
local part = os.getenv("BENCH_PART") or "measure"

local thread_index = 0
function setup(thread)
  thread:set("id", thread_index)
  thread_index = thread_index + 1
end

if #tokens == 1 then
  wrk.headers["Authorization"] = "Bearer " .. tokens[1]
elseif #tokens > 1 then
  local cut = math.floor(#tokens * 3 / 4)
  local first, n = 0, cut
  if part == "warmup" then first, n = cut, #tokens - cut end
  local i = 0
  function init(args)
    i = (id or 0) % n
  end
  function request()
    local tok = tokens[first + i + 1]
    i = (i + nthreads) % n
    return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tok })
  end
end
