-- The Gosuncn cloud command family (ME3630; Neoway N58 and Fibocom L610
-- use the same with more parameters): the module authenticates to Aliyun
-- and speaks MQTT itself (AT+CLOUDAUTH/CLOUDCONN/CLOUDSUB/CLOUDPUB,
-- athost.cloudat). No HTTP, no files, no TLS settings of its own: the
-- profile's capabilities say so. Reference 002.
local cloudat = require("athost.cloudat")

local D = {}

function D.mqtt(m, o)
  local a = o.aliyun
  return cloudat.new(m, { product_key = a.product_key,
    device_name = a.device_name, device_secret = a.device_secret })
end

return D
