//! Email messages (.eml) through mailparse: the headers people search by,
//! the text/plain body (or the html one, as visible text), and the
//! attachments, which land as child documents.

use chrono::{DateTime, Utc};
use mailparse::{DispositionType, MailHeaderMap, ParsedMail};
use serde::{Deserialize, Serialize};

use super::archive::Members;
use super::{html, ExtractError, Limits, Member, RawText};
use crate::contract::failure::ErrorKind;

/// The headers that land in `documents.metadata` under `email`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmailHeaders {
    pub from: Option<String>,
    pub to: Option<String>,
    pub cc: Option<String>,
    pub date: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// `date` parsed: the document's `event_time`.
    pub sent_at: Option<DateTime<Utc>>,
    pub attachments: Vec<String>,
}

pub(super) fn extract(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(RawText, EmailHeaders, Vec<Member>), ExtractError> {
    let mail = mailparse::parse_mail(bytes).map_err(|e| {
        ExtractError::new(
            ErrorKind::Corrupt,
            format!("not a readable email message: {e}"),
        )
    })?;
    let header = |name: &str| {
        mail.headers
            .get_first_value(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut headers = EmailHeaders {
        from: header("From"),
        to: header("To"),
        cc: header("Cc"),
        date: header("Date"),
        subject: header("Subject"),
        message_id: header("Message-ID"),
        ..EmailHeaders::default()
    };
    headers.sent_at = headers
        .date
        .as_deref()
        .and_then(|d| mailparse::dateparse(d).ok())
        .and_then(|secs| DateTime::from_timestamp(secs, 0));
    let mut parts = Parts {
        plain: None,
        html: None,
        attachments: Members::new(limits),
        names: Vec::new(),
    };
    parts.walk(&mail)?;
    headers.attachments = parts.names;
    let body = match (parts.plain, parts.html) {
        (Some(text), _) => text,
        (None, Some(page)) => html::extract(&page, limits)?.text,
        (None, None) => String::new(),
    };
    let mut text = String::new();
    for (name, value) in [
        ("Subject", &headers.subject),
        ("From", &headers.from),
        ("To", &headers.to),
        ("Cc", &headers.cc),
        ("Date", &headers.date),
    ] {
        if let Some(value) = value {
            text.push_str(&format!("{name}: {value}\n"));
        }
    }
    text.push('\n');
    text.push_str(&body);
    if !headers.attachments.is_empty() {
        text.push_str(&format!(
            "\n\nAttachments: {}\n",
            headers.attachments.join(", ")
        ));
    }
    if body.trim().is_empty() && headers.subject.is_none() {
        return Err(ExtractError::new(
            ErrorKind::NoText,
            "the email has neither a subject nor a text body",
        ));
    }
    Ok((
        RawText {
            text,
            title: headers.subject.clone(),
        },
        headers,
        parts.attachments.into_inner(),
    ))
}

/// What a message's MIME tree holds.
struct Parts {
    plain: Option<String>,
    html: Option<String>,
    attachments: Members,
    names: Vec<String>,
}

impl Parts {
    /// Finds the first inline text/plain and text/html parts, and the
    /// attachments, depth first.
    fn walk(&mut self, part: &ParsedMail<'_>) -> Result<(), ExtractError> {
        if !part.subparts.is_empty() {
            for sub in &part.subparts {
                self.walk(sub)?;
            }
            return Ok(());
        }
        let disposition = part.get_content_disposition();
        let name = disposition
            .params
            .get("filename")
            .or_else(|| part.ctype.params.get("name"))
            .cloned();
        if disposition.disposition == DispositionType::Attachment || name.is_some() {
            let n = self.names.len() + 1;
            let name = name.unwrap_or_else(|| format!("attachment-{n}"));
            let bytes = part.get_body_raw().map_err(|e| undecodable(&e))?;
            self.attachments
                .add(format!("attachment/{n}"), name.clone(), bytes)?;
            self.names.push(name);
            return Ok(());
        }
        let slot = match part.ctype.mimetype.as_str() {
            "text/plain" => &mut self.plain,
            "text/html" => &mut self.html,
            _ => return Ok(()),
        };
        if slot.is_none() {
            *slot = Some(part.get_body().map_err(|e| undecodable(&e))?);
        }
        Ok(())
    }
}

fn undecodable(e: &mailparse::MailParseError) -> ExtractError {
    ExtractError::new(
        ErrorKind::Corrupt,
        format!("an email part cannot be decoded: {e}"),
    )
}
