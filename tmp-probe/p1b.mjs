import { createHmac, randomBytes } from "node:crypto";
import http from "node:http";
function rawGet(base, pathAndQuery, method = "GET") {
  // send the request line verbatim (no client normalisation)
  const u = new URL(base);
  return new Promise((res) => {
    const req = http.request({ host: u.hostname, port: u.port, method, path: pathAndQuery }, (r) => {
      const c = []; r.on("data", (d) => c.push(d)); r.on("end", () => res({ status: r.statusCode, headers: r.headers, body: Buffer.concat(c) }));
    });
    req.on("error", (e) => res({ status: "ERR " + e.message }));
    req.end();
  });
}
export default async function ({ hook, base, gurl, send, got, desk, small, data, sha256, out, LINK_KEY }) {
  const u = new URL(gurl);
  const q = u.search.slice(1);
  const p = u.pathname;
  const params = Object.fromEntries(u.searchParams);
  const cases = {
    "as is": `${p}?${q}`,
    "encoded dot in name": `${p.replace("x.html", "x%2Ehtml")}?${q}`,
    "lowercase name change": `${p.replace("x.html", "X.html")}?${q}`,
    "trailing slash": `${p}/?${q}`,
    "double slash": `${p.replace("/attachments/", "/attachments//")}?${q}`,
    "%2F before name": `${p.replace("/attachments/", "/attachments/%2F")}?${q}`,
    "semicolon path param": `${p};x=1?${q}`,
    "dup o": `${p}?${q}&o=${encodeURIComponent(params.o)}`,
    "O uppercase key": `${p}?${q.replace("o=", "O=")}`,
    "o raw slash": `${p}?${q.replace("%2F", "/")}`,
    "r plus sign": `${p}?${q.replace("r=", "r=%2B")}`,
    "r leading zero": `${p}?${q.replace("r=", "r=0")}`,
    "r raw plus": `${p}?${q.replace("r=", "r=+")}`,
    "x float": `${p}?${q.replace(/x=(\d+)/, "x=$1.0")}`,
    "x +": `${p}?${q.replace(/x=/, "x=%2B")}`,
    "s upper": `${p}?${q.replace(/s=([0-9a-f]+)/, (m, s) => "s=" + s.toUpperCase())}`,
    "s extra": `${p}?${q}00`,
    "key without =": `${p}?${q}&o`,
    "fragment": `${p}?${q}#frag`,
    "semicolon sep": `${p}?${q.replace(/&/g, ";")}`,
    "no name": `/attachments/?${q}`,
    "prefix /attachments": `/attachments?${q}`,
    "case path": `${p.replace("/attachments/", "/Attachments/")}?${q}`,
    "dot segment": `/x/../attachments/x.html?${q}`,
    "encoded slash in prefix": `/attachments%2Fx.html?${q}`,
  };
  for (const [k, v] of Object.entries(cases)) {
    const r = await rawGet(base, v);
    out("tamper", k, r.status, r.body.length, r.status === 200 ? sha256(r.body) === sha256(data) : r.body.toString().slice(0, 80));
  }
  const h = await rawGet(base, `${p}?${q}`, "HEAD");
  out("HEAD", h.status, JSON.stringify(h.headers));
  for (const m of ["POST", "OPTIONS", "PUT"]) out(m, (await rawGet(base, `${p}?${q}`, m)).status);
  // old key signs
  const sign = (key, { object, start, end, expires, name }) => createHmac("sha256", key).update(JSON.stringify(["mailhook attachment link 1", object, start, end, expires, name])).digest("hex");
  const [start, end] = params.r.split("-").map(Number);
  const L = { object: params.o, start, end, expires: Number(params.x), name: "x.html" };
  out("old-key signed", (await rawGet(base, `${p}?o=${encodeURIComponent(params.o)}&r=${start}-${end}&x=${params.x}&s=${sign("old-key", L)}`)).status);
  // range past the end of the object (signed)
  const big = { ...L, end: 10_000_000 };
  let r = await rawGet(base, `${p}?o=${encodeURIComponent(params.o)}&r=${start}-${big.end}&x=${params.x}&s=${sign(LINK_KEY, big)}`);
  out("signed range past end", r.status, r.body.length, r.body.toString().slice(0, 120));
  const huge = { ...L, start: 2 ** 63, end: 18446744073709551615n.toString() };
  // JSON.stringify of numbers > 2^53 differs from Rust; just see what the server does
  r = await rawGet(base, `${p}?o=${encodeURIComponent(params.o)}&r=9223372036854775808-18446744073709551615&x=${params.x}&s=${"0".repeat(64)}`);
  out("u64 range unsigned", r.status);
  r = await rawGet(base, `${p}?o=${encodeURIComponent(params.o)}&r=0-18446744073709551616&x=${params.x}&s=${"0".repeat(64)}`);
  out("u64 overflow", r.status);
  // a signed link whose range starts off the literal (not at a quote)
  const off = { ...L, start: start + 1 };
  r = await rawGet(base, `${p}?o=${encodeURIComponent(params.o)}&r=${off.start}-${end}&x=${params.x}&s=${sign(LINK_KEY, off)}`);
  out("signed off-literal", r.status, r.body.length, String(r.headers["content-type"]));

  // names
  const b64 = randomBytes(1500).toString("base64");
  const names = [". .", ". ..", "a%41.pdf", "+ plus.pdf", "résumé.pdf", "\u202Egnp.exe", "x".repeat(300) + ".exe", "a\r\nSet-Cookie: x=y.html", "a;b\"c\\d.txt", "CON", "ünï" + "é".repeat(200), "a?b#c&d=e.txt", "\u0085x\u2028y.txt", ".", " \u00A0.html", "%", "%2e%2e", "a/../../b.txt", "\ud800x", null, 42];
  const atts = names.map((n) => ({ type: "text/html", name: n, content: b64 }));
  const id = await send("names", JSON.stringify(atts), "desk");
  if (id) {
    const ev = (await got(desk, id, "names")).event;
    for (const a of ev.data.inbound.attachments) {
      if (!a.url) { out("name", JSON.stringify(a.filename), "no url", a.content_base64?.length); continue; }
      const rr = await fetch(a.url).catch((e) => ({ status: "ERR " + e.message, headers: new Headers(), arrayBuffer: async () => new ArrayBuffer(0) }));
      const buf = Buffer.from(await rr.arrayBuffer());
      out("name", JSON.stringify(a.filename), "->", rr.status, JSON.stringify(rr.headers.get("content-disposition")), "path", new URL(a.url).pathname.slice(0, 60), buf.length);
    }
  }
}
