//! The outbound half of a room's keys: where and how its deliveries are POSTed.

use patchbay_sdk::{ConfigDuration, ConfigError};

use super::{DEFAULT_TIMEOUT, OutboundSettings, Payload, RawRoom, Resolver, check_header_name};
use crate::templates::Templates;

impl Resolver<'_> {
    pub(super) fn outbound(
        &self,
        raw: &RawRoom,
        templates: &mut Templates,
        room: &str,
    ) -> Result<Option<OutboundSettings>, ConfigError> {
        let Some(url) = self.inherit(&raw.url, |p| &p.url) else {
            return Ok(None);
        };
        match url.split_once("://") {
            Some(("http" | "https", rest)) if !rest.is_empty() => {}
            _ => {
                return Err(self.error("url", format!("`{url}` is not an http:// or https:// URL")));
            }
        }
        let payload = self
            .inherit(&raw.payload, |p| &p.payload)
            .unwrap_or(Payload::Json);
        let template = self.compiled(
            (&raw.payload_template, &raw.payload_template_file),
            self.parent
                .map(|p| (&p.payload_template, &p.payload_template_file)),
            "payload_template",
            (payload == Payload::Template).then_some("payload = \"template\""),
            format!("out:{room}"),
            templates,
        )?;
        let sign_secret = self.secret(
            &raw.sign_secret,
            &raw.sign_secret_file,
            |p| (p.sign_secret.clone(), p.sign_secret_file.clone()),
            "sign_secret",
        )?;
        let sign_header = self
            .inherit(&raw.sign_header, |p| &p.sign_header)
            .unwrap_or_else(|| "X-Patchbay-Signature-256".to_owned());
        check_header_name(&sign_header).map_err(|m| self.error("sign_header", m))?;
        if [
            crate::auth::PATCHBAY_SIGNATURE,
            crate::auth::PATCHBAY_TIMESTAMP,
        ]
        .iter()
        .any(|fixed| fixed.eq_ignore_ascii_case(&sign_header))
        {
            return Err(self.error(
                "sign_header",
                format!("`{sign_header}` carries patchbay's timed signature; pick another name"),
            ));
        }
        let timeout = self
            .inherit(&raw.timeout, |p| &p.timeout)
            .map_or(DEFAULT_TIMEOUT, ConfigDuration::get);
        if timeout.is_zero() {
            return Err(self.error("timeout", "must be above 0s"));
        }
        let headers = self
            .inherit(&raw.headers, |p| &p.headers)
            .unwrap_or_default();
        for name in headers.keys() {
            check_header_name(name).map_err(|m| self.error("headers", m))?;
        }
        let content_type = self
            .inherit(&raw.content_type, |p| &p.content_type)
            .unwrap_or_else(|| "application/json".to_owned());
        let tls_ca = match self.inherit(&raw.tls_ca_file, |p| &p.tls_ca_file) {
            None => None,
            Some(path) => {
                let path = self.account.resolve(&path);
                let pem = std::fs::read(&path).map_err(|err| {
                    self.error(
                        "tls_ca_file",
                        format!("cannot read {}: {err}", path.display()),
                    )
                })?;
                match reqwest::Certificate::from_pem_bundle(&pem) {
                    Ok(certs) if !certs.is_empty() => Some(pem),
                    _ => {
                        return Err(self.error(
                            "tls_ca_file",
                            format!("{} holds no PEM certificate", path.display()),
                        ));
                    }
                }
            }
        };
        Ok(Some(OutboundSettings {
            url,
            payload,
            template,
            content_type,
            sign_secret,
            sign_header,
            timeout,
            headers,
            tls_ca,
        }))
    }
}
