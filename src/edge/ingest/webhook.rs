//! A webhook, `POST /webhooks/{provider}`: the core's head (what needs no
//! body), the reverse-DNS steps it may ask for, the body read within its
//! limit, then the plan's I/O (`ingest::accept`), as for mail.

use super::body::{read_stream, Length};
use super::{accept, rdns, Taken};
use crate::edge::env::{config, now_seconds};
use crate::error::ApiError;
use crate::pipeline::{announced_len, head, Head};
use crate::providers::{Inbound, Provider};
use worker::Env;

/// The request's events on the queue (or seen before), or the refusal.
pub async fn handle(provider: Provider, req: &web_sys::Request, env: &Env) -> Result<Taken, ApiError> {
    let cfg = config(env).map_err(|e| ApiError::NotConfigured(e.to_string()))?;
    // Only the headers the core reads, each asked for by name: no map of all of them.
    let given = req.headers();
    let headers: Vec<(String, String)> =
        provider.request_headers().into_iter().filter_map(|name| Some((name.to_string(), given.get(name).ok().flatten()?))).collect();
    let client_ip = headers.iter().find(|(k, _)| k == "cf-connecting-ip").map(|(_, v)| v.as_str());
    let mut inbound = Inbound::new(&headers, client_ip, &[], now_seconds());
    let announced = announced_len(&inbound);
    let (limit, reserve) = loop {
        match head(&cfg, provider, &inbound, announced) {
            Head::Refuse(e) => return Err(e),
            // Asked once: the head never asks again once `rdns` holds a verdict.
            Head::Rdns(check) => inbound.rdns = Some(rdns::verify(check, env).await?),
            Head::Read { limit, reserve } => break (limit, reserve),
        }
    };
    // Bounded as the bytes arrive, whatever Content-Length says, chunked or not.
    let length = match (announced, inbound.header("transfer-encoding")) {
        (Some(n), None) => Length::Framed(n),
        (Some(n), Some(_)) => Length::Announced(n),
        (None, _) => Length::Unknown,
    };
    let body = read_stream(req.body(), limit, length, reserve).await?;
    let inbound = Inbound { body: &body, json: &body, now: now_seconds(), ..inbound };
    accept(env, provider, &cfg, &inbound).await
}
