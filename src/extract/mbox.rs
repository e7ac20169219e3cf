//! Mailboxes (mbox): each message lands as a child email document, and the
//! mailbox's own text lists the messages by subject, sender and date.

use mailparse::MailHeaderMap;

use super::archive::Members;
use super::{ExtractError, Limits, Member, RawText};

pub(super) fn extract(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(RawText, Vec<Member>), ExtractError> {
    let mut members = Members::new(limits);
    let mut text = String::new();
    for (i, message) in messages(bytes).enumerate() {
        let n = i + 1;
        let message = unescape(message);
        let headers = mailparse::parse_headers(&message).map(|(h, _)| h).ok();
        let header = |name: &str| {
            headers
                .as_ref()
                .and_then(|h| h.get_first_value(name))
                .unwrap_or_default()
        };
        text.push_str(&format!(
            "- message {n}: {} (from {}, {})\n",
            header("Subject"),
            header("From"),
            header("Date")
        ));
        drop(headers);
        members.add(format!("message/{n}"), format!("message-{n}.eml"), message)?;
    }
    let members = members.into_inner();
    if !members.is_empty() {
        text.insert_str(0, &format!("A mailbox of {} messages:\n\n", members.len()));
    }
    Ok((RawText { text, title: None }, members))
}

/// The messages between `From ` separator lines, without the separators.
fn messages(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut line = 0;
    while line < bytes.len() {
        if bytes[line..].starts_with(b"From ") {
            starts.push(line);
        }
        line = match bytes[line..].iter().position(|&b| b == b'\n') {
            Some(end) => line + end + 1,
            None => bytes.len(),
        };
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .copied()
        .chain([bytes.len()])
        .collect();
    starts.into_iter().zip(ends).map(move |(start, end)| {
        bytes[start..end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&[][..], |nl| &bytes[start + nl + 1..end])
    })
}

/// mboxrd quoting: `>From ` (and `>>From `...) inside a message lose one `>`.
fn unescape(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    for line in message.split_inclusive(|&b| b == b'\n') {
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        if quotes > 0 && line[quotes..].starts_with(b"From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_on_separator_lines_only() {
        let mbox = b"From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nhi\n>From the start\n\nFrom b@x Tue Jan  2 00:00:00 2024\nSubject: two\n\nbye\n";
        let found: Vec<Vec<u8>> = messages(mbox).map(unescape).collect();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0], b"Subject: one\n\nhi\nFrom the start\n\n");
        assert_eq!(found[1], b"Subject: two\n\nbye\n");
    }
}
