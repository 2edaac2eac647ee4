-- File upload to the module's file system: AT+FSCREATE, then AT+FSWRITE
-- with the exact byte count, the data after the ">" prompt, and a progress
-- line for large files (references 001, 003).
local athost = require("athost")

local M = {}

-- Writes data to file name on the module. opts.timeout_s is the module's
-- own timeout for the data (default: generous for the baud rate).
function M.file(m, name, data, opts)
  opts = opts or {}
  local fs = m.profile.fs
  if not fs then error(m.profile.name .. " has no file commands", 2) end
  local r, err = m:cmd(string.format(fs.create, name))
  if not r then error(string.format("creating %s: %s", name, err), 0) end
  local timeout_s = opts.timeout_s or math.max(15, #data // 1000)
  r, err = m:cmd(string.format(fs.write, name, #data, timeout_s),
    { prompt = fs.prompt })
  if not r then error(string.format("writing %s: %s", name, err), 0) end
  local chunk = m.profile.limits.upload_chunk or 1024
  local big = #data > 8 * chunk
  -- A small file goes in one write: the transcript masks a registered
  -- secret (a private key) only when one record holds all of it.
  if not big then chunk = math.max(#data, 1) end
  local next_report = 25
  for i = 1, #data, chunk do
    assert(m.port:send(data:sub(i, i + chunk - 1)))
    local done = math.min(#data, i + chunk - 1)
    if big and done * 100 // #data >= next_report and done < #data then
      athost.log(string.format("%s: %d of %d bytes (%d%%)", name, done, #data,
        done * 100 // #data))
      next_report = next_report + 25
    end
  end
  r, err = m.port:final({ timeout = timeout_s * 1000 + 5000 })
  if not r then
    error(string.format("writing %s (%d bytes): %s", name, #data, err), 0)
  end
  return #data
end

return M
