//! Email Routing: raw mail to `email.received`. The golden fixtures cover the
//! shapes (plain, alternative, attachments and inline images, charsets and
//! encoded words, malformed, large, forged verdicts); these check what a
//! golden file cannot say on its own: bytes, identity and refusals.

mod common;
use base64::Engine as _;
use common::*;
use mailhook::event::Route;
use mailhook::providers::{Inbound, Provider, SmtpEnvelope};
use proptest::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

const P: Provider = Provider::EmailRouting;

fn one(body: &[u8]) -> Value {
    let mut events = ingest(P, &config(), body).unwrap_or_else(|e| panic!("refused: {e}"));
    assert_eq!(events.len(), 1);
    events.remove(0)
}

fn to(rcpt: &str, body: &[u8]) -> Value {
    let req = Inbound { envelope: Some(SmtpEnvelope { from: "a@example.net", to: rcpt }), ..Inbound::new(&[], None, body, NOW) };
    let events = mailhook::testkit::ingest_json(P, &config(), &req).unwrap();
    serde_json::from_slice(&events[0]).unwrap()
}

fn attachment_bytes(event: &Value, filename: &str) -> Vec<u8> {
    let a = event["data"]["inbound"]["attachments"].as_array().unwrap().iter().find(|a| a["filename"] == filename).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD.decode(a["content_base64"].as_str().unwrap()).unwrap();
    assert_eq!(a["size"], bytes.len(), "{filename}: size is the decoded length");
    bytes
}

#[test]
fn attachments_keep_their_exact_bytes() {
    let e = one(&fixture(P, "attachments"));
    assert!(attachment_bytes(&e, "logo.png").starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(attachment_bytes(&e, "invoice.pdf"), b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n\x00\xff\xfe\x80");
    // A text attachment keeps its charset (latin-1 here), not converted to UTF-8.
    assert_eq!(attachment_bytes(&e, "notes.txt"), b"Caf\xe9 cr\xe8me, na\xefve fa\xe7ade - no: just latin-1 caf\xe9\r\n");
    assert!(attachment_bytes(&e, "original.eml").starts_with(b"From: noreply@example.com\r\n"));
    let large = one(&fixture(P, "large"));
    let tif = attachment_bytes(&large, "scan-0001.tif");
    assert_eq!(hex::encode(Sha256::digest(&tif)), "ccf05e65a3f0d9cd22f22b594f9d863aeaf0cb298f4fc1ed69ac86ba18a3ff1d");
}

#[test]
fn no_data_raw_the_message_is_in_data_inbound() {
    for name in fixture_names(P) {
        assert!(one(&fixture(P, &name))["data"].get("raw").is_none(), "{name}");
    }
}

#[test]
fn not_mail_is_refused_with_what_is_wrong() {
    for body in [&b""[..], b"  \r\n", b"\r\n\r\njust a body, no header fields"] {
        let e = ingest(P, &config(), body).unwrap_err();
        assert_eq!(e.status(), 400, "{body:?}: {e}");
    }
}

#[test]
fn odd_mail_is_taken() {
    // An unknown charset, bare LF line ends, no Message-ID.
    let odd = b"From: x@example.com\nSubject: =?x-unknown?Q?caf=E9?=\nContent-Type: text/plain; charset=x-unknown\n\nbody \xe9\n";
    let e = one(odd);
    assert_eq!(e["type"], "email.received");
    assert!(e["data"]["inbound"]["text"].as_str().unwrap().starts_with("body "));
    assert!(e.get("subject").is_none(), "no Message-ID: no CloudEvents subject");
    // A line that is no header field ends the header block: it and what follows are the text (found
    // in real mail: mail-parser read on as headers, and a message without a blank line lost its text).
    for (raw, text) in [
        (&b"From: x@example.com\nnot a header line\nSubject: s\n\nbody\n"[..], "not a header line\nSubject: s\n\nbody\n"),
        (b"From: x@example.com\r\nSubject: s\r\nthe text, no blank line before it\r\n", "the text, no blank line before it\r\n"),
    ] {
        assert_eq!(one(raw)["data"]["inbound"]["text"], text, "{}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn mail_as_real_clients_write_it_is_read_as_rfc_5322_and_2045_parsers_read_it() {
    let mixed = |part_headers: &str, body: &str| {
        format!("From: a@example.com\r\nTo: b@example.com\r\nMessage-ID: <m@x>\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n{part_headers}\r\n\r\n{body}\r\n--b--\r\n")
    };
    // Outlook folds a long file name between encoded words: the white space between them is not the name's.
    let e = one(mixed("Content-Type: application/pdf;\r\n name=\"=?iso-8859-2?Q?Umowa_sygn?=\r\n       =?iso-8859-2?Q?=2E_2Ds.pdf?=\"\r\nContent-Transfer-Encoding: base64", "QUJD").as_bytes());
    assert_eq!(e["data"]["inbound"]["attachments"][0]["filename"], "Umowa sygn. 2Ds.pdf");
    // A uuencoded part is decoded, and named by its `begin` line.
    let e = one(mixed(
        "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode",
        "begin 644 cat.txt\r\n#0V%T\r\n`\r\nend",
    )
    .as_bytes());
    let a = &e["data"]["inbound"]["attachments"][0];
    assert_eq!((a["filename"].as_str(), a["size"].as_u64()), (Some("cat.txt"), Some(3)));
    assert_eq!(attachment_bytes(&e, "cat.txt"), b"Cat");
    // Repeated To and Cc: every list.
    let e = one(b"From: a@example.com\r\nTo: one@example.com\r\nTo: two@example.com, three@example.com\r\nCc: c1@example.com\r\nCc: c2@example.com\r\n\r\nx\r\n");
    let emails = |k: &str| e["data"][k].as_array().map(|l| l.iter().map(|a| a["email"].as_str().unwrap().to_string()).collect::<Vec<_>>());
    assert_eq!(emails("to").unwrap(), ["one@example.com", "two@example.com", "three@example.com"]);
    assert_eq!(emails("cc").unwrap(), ["c1@example.com", "c2@example.com"]);
    // An invalid Content-Type is text/plain (RFC 2045 §5.2): the text, not an attachment.
    for ct in ["text; charset=us-ascii", ";", "plain"] {
        let e = one(format!("From: a@example.com\r\nContent-Type: {ct}\r\n\r\nthe text\r\n").as_bytes());
        assert_eq!(e["data"]["inbound"]["text"], "the text\r\n", "{ct}");
        assert_eq!(e["data"]["inbound"]["attachments"].as_array().map(Vec::len), Some(0), "{ct}");
    }
    // Blank lines before the headers, and an mbox `From ` line, are not the end of the headers.
    for lead in [" \r\n", "\r\n\r\n", "From a@example.com Mon Jan  1 00:00:00 2024\r\n"] {
        let e = one(format!("{lead}From: a@example.com\r\nSubject: s\r\n\r\nthe text\r\n").as_bytes());
        assert_eq!((e["data"]["subject"].as_str(), e["data"]["inbound"]["text"].as_str()), (Some("s"), Some("the text\r\n")), "{lead:?}");
    }
}

#[test]
fn identity_is_the_message_and_its_recipient() {
    let mail = fixture(P, "plain");
    let id = |v: Value| v["id"].as_str().unwrap().to_string();
    // One copy per recipient: two events; the same recipient again: the same one.
    assert_ne!(id(to("a@mailhook.test", &mail)), id(to("b@mailhook.test", &mail)));
    assert_eq!(id(to("a@mailhook.test", &mail)), id(to("a@mailhook.test", &mail)));
    // Relayed again, with other trace headers on top: the same message.
    let relayed =
        [b"Received: from mx2 by cloudflare-email.net; Thu, 26 Nov 2026 00:00:00 +0000\r\nARC-Seal: i=2; t=99\r\n".as_slice(), &mail]
            .concat();
    assert_eq!(id(to("a@mailhook.test", &mail)), id(to("a@mailhook.test", &relayed)));
    // The same Message-ID with another body is another message.
    let other = String::from_utf8_lossy(&mail).replace("Ada\r\n", "Eve\r\n");
    assert_ne!(id(to("a@mailhook.test", &mail)), id(to("a@mailhook.test", other.as_bytes())));
}

#[test]
fn verdicts_are_cloudflares_only() {
    let forged = one(&fixture(P, "forged-verdicts"));
    let auth = &forged["data"]["inbound"]["auth"];
    assert_eq!((auth["spf"].as_str(), auth["dkim"].as_str(), auth["dmarc"].as_str()), (Some("fail"), Some("fail"), Some("fail")));
    // Without Cloudflare's headers (a message handed over locally, say): no verdicts, whatever the sender wrote.
    let local = b"From: a@example.net\r\nAuthentication-Results: mx.example.net; dkim=pass; spf=pass; dmarc=pass\r\nMessage-ID: <l@example.net>\r\n\r\nhi\r\n";
    assert!(one(local)["data"]["inbound"]["auth"].is_null());
}

/// A multipart message with one attachment of `bytes`, in `encoding`.
fn with_attachment(bytes: &[u8], encoding: &str, text: &str) -> Vec<u8> {
    let body = match encoding {
        "base64" => {
            let b = base64::engine::general_purpose::STANDARD.encode(bytes);
            b.as_bytes().chunks(76).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("\r\n")
        }
        _ => bytes.iter().map(|b| format!("={b:02X}")).collect::<Vec<_>>().chunks(25).map(|c| c.concat()).collect::<Vec<_>>().join("=\r\n"),
    };
    format!(
        "From: p@example.net\r\nTo: q@mailhook.test\r\nMessage-ID: <prop@example.net>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n\
         --zz\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --zz\r\nContent-Type: application/octet-stream; name=\"f.bin\"\r\nContent-Transfer-Encoding: {encoding}\r\nContent-Disposition: attachment; filename=\"f.bin\"\r\n\r\n{body}\r\n--zz--\r\n",
        base64::engine::general_purpose::STANDARD.encode(text)
    )
    .into_bytes()
}

proptest! {
    #[test]
    fn any_attachment_bytes_arrive_exactly(bytes in prop::collection::vec(any::<u8>(), 0..2048), qp in any::<bool>(), text in "\\PC{0,200}") {
        let e = one(&with_attachment(&bytes, if qp { "quoted-printable" } else { "base64" }, &text));
        prop_assert_eq!(attachment_bytes(&e, "f.bin"), bytes);
        prop_assert_eq!(e["data"]["inbound"]["text"].as_str().unwrap_or_default(), text.as_str());
    }
}

#[test]
fn destination_filters_name_it_and_apply_to_it() {
    const KEY: &str = "whsec_c2Vjb25k";
    let cfg = config_with(&[
        (
            "DESTINATIONS",
            r#"[{"name":"bounces","url":"https://b.example/h","filter":{"providers":["maileroo"],"types":["email.bounced"]}},
                {"name":"inbox","url":"https://i.example/h","filter":{"providers":["email-routing"],"types":["email.*"]}}]"#,
        ),
        ("DESTINATION_BOUNCES_SIGNING_SECRET", KEY),
        ("DESTINATION_INBOX_SIGNING_SECRET", KEY),
        ("ORIGIN_URL", ""),
    ]);
    assert_eq!(cfg.delivery_problem(), None);
    assert_eq!(
        cfg.takers(Route { provider: P.name(), kind: "email.received", tag: None }),
        vec!["inbox"],
        "a filter of other providers does not take its mail"
    );
    assert_eq!(cfg.takers(Route { provider: "maileroo", kind: "email.bounced", tag: None }), vec!["bounces"]);
}

#[test]
fn text_attachments_keep_every_byte_and_their_charset() {
    let mail = b"From: a@example.net\r\nMessage-ID: <t@example.net>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"q\"\r\n\r\n\
--q\r\nContent-Type: text/plain\r\n\r\nbody\r\n\
--q\r\nContent-Type: text/csv; charset=ISO-8859-1; name=\"a.csv\"\r\nContent-Disposition: attachment; filename=\"a.csv\"\r\n\r\nline1;caf\xe9\r\nline2\r\n\r\n\
--q--\r\n";
    let e = one(mail);
    assert_eq!(attachment_bytes(&e, "a.csv"), b"line1;caf\xe9\r\nline2\r\n", "7bit/8bit: the last line break is the part's");
    let a = &e["data"]["inbound"]["attachments"][0];
    assert_eq!(a["content_type"], "text/csv; charset=iso-8859-1");
    // Without its closing boundary, a text attachment is still its own bytes.
    let cut = &mail[..mail.len() - b"--q--\r\n".len()];
    assert!(attachment_bytes(&one(cut), "a.csv").starts_with(b"line1;caf\xe9\r\nline2\r\n"));
}

#[test]
fn cloudflares_spam_score_is_not_the_message() {
    let mail = fixture(P, "plain");
    let id = |m: &[u8]| to("a@mailhook.test", m)["id"].clone();
    let scored = |n: u8| [format!("X-CF-SpamH-Score: {n}\r\n").as_bytes(), &mail].concat();
    assert_eq!(id(&scored(1)), id(&scored(2)));
}

#[test]
fn what_would_parse_slowly_or_blow_up_is_refused_for_good() {
    let refused = |m: &[u8]| ingest(P, &config(), m).map(|_| ()).unwrap_err();
    // A boundary longer than RFC 2046 allows.
    let long =
        format!("From: a@b.example\r\nContent-Type: multipart/mixed; boundary=\"{}x\"\r\n\r\n{}\r\n", "-".repeat(200), "-".repeat(5000));
    assert!(refused(long.as_bytes()).to_string().contains("boundary of 201 characters"));
    // Many declared boundaries that never appear.
    let mut many = String::from("From: a@b.example\r\nContent-Type: multipart/mixed; boundary=\"top\"\r\n\r\n");
    for i in 0..40 {
        many.push_str(&format!("--top\r\nContent-Type: multipart/mixed; boundary=\"never{i}\"\r\n\r\nx\r\n"));
    }
    assert!(refused(many.as_bytes()).to_string().contains("never appear"));
    // Text that grows sixfold as JSON (control characters), past the memory budget.
    let ctl = [b"From: a@b.example\r\nMessage-ID: <c@b>\r\n\r\n".as_slice(), &vec![1u8; 18 * 1024 * 1024]].concat();
    assert!(refused(&ctl).to_string().contains("once decoded and written as JSON"));
    // A header block that would make the stored event's manifest too large to read back.
    let header = format!("From: a@b.example\r\nX-Junk: {}\r\n\r\nhi\r\n", "\u{1}".repeat(1024 * 1024));
    assert!(refused(header.as_bytes()).to_string().contains("header"));
    // A legitimate boundary of 70 characters is fine.
    let ok = format!(
        "From: a@b.example\r\nMessage-ID: <ok@b>\r\nContent-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n--{b}\r\nContent-Type: text/plain\r\n\r\nfine\r\n--{b}--\r\n",
        b = "b".repeat(70)
    );
    assert_eq!(one(ok.as_bytes())["data"]["inbound"]["text"], "fine");
}

#[test]
fn mime_quoted_in_a_body_is_never_refused() {
    let head = "From: a@b.example\r\nTo: c@mailhook.test\r\nMessage-ID: <fp@b.example>\r\n";
    // A link with a long `boundary=` parameter, and 17 pasted HTTP requests declaring boundaries that never appear.
    let url = format!("https://uploads.example.com/v1/put?boundary=abc&token={}", "x".repeat(150));
    let mut pasted = String::new();
    for i in 0..17 {
        pasted.push_str(&format!(
            "POST /upload HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=----WebKitFormBoundary{i:016}\r\n\r\n"
        ));
    }
    let body = format!("{head}Content-Type: text/plain; charset=utf-8\r\n\r\n{url}\r\n{pasted}");
    assert!(one(body.as_bytes())["data"]["inbound"]["text"].as_str().unwrap().contains("WebKitFormBoundary"));
    // A digest of abuse reports: each part quotes an original's header fields, boundary included.
    let mut digest = format!("{head}Content-Type: multipart/mixed; boundary=outer\r\n\r\n");
    for i in 0..17 {
        digest.push_str(&format!(
            "--outer\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: s{i}@x.example\r\nContent-Type: multipart/alternative; boundary=\"0000{i:012x}\"\r\n\r\n"
        ));
    }
    digest.push_str("--outer--\r\n");
    assert_eq!(one(digest.as_bytes())["type"], "email.received");
}

#[test]
fn boundary_spellings_the_parser_takes_are_checked_too() {
    let refused = |m: String| ingest(P, &config(), m.as_bytes()).map(|_| ()).unwrap_err().to_string();
    let dashes = "-".repeat(3000);
    let body = "-".repeat(6000);
    for param in [format!("boundary*0=\"{dashes}x\""), format!("boundary*=us-ascii''{dashes}x"), format!("boundary =\"{dashes}x\"")] {
        let m = format!("From: a@b.example\r\nContent-Type: multipart/mixed; {param}\r\n\r\n{body}\r\n");
        assert!(refused(m).contains("malformed or oversized MIME"), "{param}");
    }
    // Delimiter lines written before the declarations do not count.
    let mut m = String::from("From: a@b.example\r\nContent-Type: multipart/mixed; boundary=top\r\n\r\n");
    for i in 0..20 {
        m.push_str(&format!("--never{i}\r\n--top\r\nContent-Type: multipart/mixed; boundary=never{i}\r\n\r\nx\r\n"));
    }
    assert!(refused(m).contains("never appear"));
    // Too many parts, however small.
    let tiny =
        format!("From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n{}--b--\r\n", "--b\r\n\r\nx\r\n".repeat(3000));
    assert!(refused(tiny).contains("more than 2000 parts"));
    // Text that is not UTF-8 may triple when converted: refused before it is parsed, not after.
    let ff = [b"From: a@b.example\r\nMessage-ID: <f@b>\r\nContent-Type: text/plain\r\n\r\n".as_slice(), &vec![0xffu8; 24 * 1024 * 1024]]
        .concat();
    assert!(ingest(P, &config_with(&[("MAX_BODY_BYTES", "104857600")]), &ff).unwrap_err().to_string().contains("once decoded"));
}
