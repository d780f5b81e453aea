//! Every header and value parser on arbitrary text: nothing may panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = mailhook::mailauth::authentication_results(&s);
    let _ = mailhook::mailauth::received_spf(&s);
    let _ = mailhook::mailauth::parse_header_block(&s);
    let _ = mailhook::mailauth::base64_decoded_len(&s);
    let _ = mailhook::address::parse_list(&s);
    let _ = mailhook::time::parse_rfc3339(&s);
    let _ = mailhook::delivery::parse_retry_after(&s, 1_735_689_600);
    let _ = mailhook::admin::EventQuery::parse(&s);
    let _ = mailhook::routes::route("GET", &s);
    let _ = mailhook::dns::parse_answer(data, mailhook::dns::RecordType::Ptr);
    if let Ok(list) = mailhook::auth::IpList::parse(&s) {
        let _ = list.contains(&s);
    }
    let secrets = mailhook::config::Secrets::parse(Some("k"));
    let _ = mailhook::auth::verify_hex_hmac(&secrets, data, &s);
});
