// Live SMS encoding and segment count while a marketer types (the server
// recomputes and stores the same numbers on save: templates/sms.py).
(function () {
  "use strict";
  var BASIC = "\n\r\u001b !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz\u00a1\u00a3\u00a4\u00a5\u00a7\u00bf\u00c4\u00c5\u00c6\u00c7\u00c9\u00d1\u00d6\u00d8\u00dc\u00df\u00e0\u00e4\u00e5\u00e6\u00e8\u00e9\u00ec\u00f1\u00f2\u00f6\u00f8\u00f9\u00fc\u0393\u0394\u0398\u039b\u039e\u03a0\u03a3\u03a6\u03a8\u03a9";
  var EXTENDED = "\f[\\]^{|}~\u20ac";
  function info(text) {
    var septets = 0, gsm = true;
    for (var i = 0; i < text.length; i++) {
      var ch = text.charAt(i);
      if (BASIC.indexOf(ch) !== -1) { septets += 1; }
      else if (EXTENDED.indexOf(ch) !== -1) { septets += 2; }
      else { gsm = false; break; }
    }
    var enc = gsm ? "GSM-7" : "UCS-2";
    var len = gsm ? septets : text.length;  // JS strings count UTF-16 code units
    var single = gsm ? 160 : 70, part = gsm ? 153 : 67;
    var segments = len === 0 ? 0 : (len <= single ? 1 : Math.ceil(len / part));
    return enc + ", " + len + " characters, " + segments + " segment" + (segments === 1 ? "" : "s") +
      " (before variables are filled in)";
  }
  function attach(area) {
    if (area.dataset.smsCounter) { return; }
    area.dataset.smsCounter = "1";
    var out = document.createElement("div");
    out.className = "sms-counter";
    out.style.cssText = "font-size:12px;color:#6b7280;margin-top:4px";
    area.parentNode.appendChild(out);
    var update = function () { out.textContent = info(area.value); };
    area.addEventListener("input", update);
    update();
  }
  function scan() {
    document.querySelectorAll("textarea[name^='variants-'][name$='-body']").forEach(attach);
  }
  document.addEventListener("DOMContentLoaded", scan);
  document.addEventListener("formset:added", scan);
})();
