local st = require("streamtelecom")

local function seg(text)
  return assert(st.segments(text))
end

describe("st.segments", function()
  local cases = {
    -- text, encoding, parts, chars, per_part, remaining
    { "Привет", "ucs2", 1, 6, 70, 64 },
    { "", "gsm7", 0, 0, 160, 160 },
    { string.rep("a", 160), "gsm7", 1, 160, 160, 0 },
    { string.rep("a", 161), "gsm7", 2, 161, 153, 145 },
    { string.rep("a", 153 * 2), "gsm7", 2, 306, 153, 0 },
    { string.rep("a", 153 * 2 + 1), "gsm7", 3, 307, 153, 152 },
    { string.rep("Я", 70), "ucs2", 1, 70, 70, 0 },
    { string.rep("Я", 71), "ucs2", 2, 71, 67, 63 },
    { string.rep("€", 80), "gsm7", 1, 80, 160, 0 },
    { string.rep("€", 81), "gsm7", 2, 81, 153, 153 - 5 * 2 }, -- 76 fit in part 1
    { "^{}[]~|\\", "gsm7", 1, 8, 160, 160 - 16 },
    { "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", "gsm7", 1, 42, 160, 118 },
    { "😀", "ucs2", 1, 1, 70, 68 },
    { string.rep("😀", 35), "ucs2", 1, 35, 70, 0 },
    { string.rep("😀", 36), "ucs2", 2, 36, 67, 67 - 3 * 2 }, -- 33 fit in part 1
  }
  for _, c in ipairs(cases) do
    it(("counts %d bytes of %q as %d %s part(s)"):format(#c[1], c[1]:sub(1, 12), c[3], c[2]), function()
      assert.same({ encoding = c[2], parts = c[3], chars = c[4], per_part = c[5], remaining = c[6] },
        seg(c[1]))
    end)
  end

  it("never splits an escape sequence between parts", function()
    -- 152 septets, then a 2-septet '€' that cannot start in the first part's last septet
    local s = seg(string.rep("a", 152) .. "€" .. string.rep("a", 10))
    assert.same({ encoding = "gsm7", parts = 2, chars = 163, per_part = 153, remaining = 141 }, s)
  end)

  it("never splits a surrogate pair between parts", function()
    local s = seg(string.rep("Я", 66) .. "😀" .. string.rep("Я", 10))
    assert.same({ encoding = "ucs2", parts = 2, chars = 77, per_part = 67, remaining = 55 }, s)
  end)

  it("answers invalid for text that is not UTF-8 and raises for a non-string", function()
    local ok, err, code = st.segments("\255abc")
    assert.is_nil(ok)
    assert.equals("invalid", code)
    assert.matches("UTF%-8", err)
    assert.has_error(function() st.segments(nil) end)
    assert.has_error(function() st.segments(12) end)
  end)
end)
