//! The Session Manager data channel's binary message: `ClientMessage` in AWS's
//! session-manager-plugin, `AgentMessage` in the SSM agent, one layout. All integers
//! big-endian (reference: `shared/reference/transports.md` §1.3, from the plugin's
//! `src/message/clientmessage.go` and `messageparser.go`):
//!
//! ```text
//! off len field
//!   0   4 HeaderLength     116 when written (= offset of PayloadLength); the payload starts
//!                          at HeaderLength + 4, so a longer header is honoured on read
//!   4  32 MessageType      ASCII, padded with spaces when written; NULs and spaces trimmed
//!  36   4 SchemaVersion    1
//!  40   8 CreatedDate      Unix milliseconds
//!  48   8 SequenceNumber   per direction, from 0
//!  56   8 Flags            bit 0 SYN, bit 1 FIN (acknowledgements carry 3)
//!  64  16 MessageId        a UUID as two 64-bit halves, the least significant half first
//!  80  32 PayloadDigest    SHA-256 of the payload
//! 112   4 PayloadType      1 output, 5/6/7 handshake, 10 flag, …
//! 116   4 PayloadLength
//! 120   n Payload
//! ```
//!
//! [`Message`] is a bounds-checked view that never panics on input; [`encode`] writes one.
//! The JSON payloads (acknowledgement, handshake, channel closed, OpenDataChannel) follow.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Byte offsets of the fields.
pub mod offset {
    pub const HEADER_LENGTH: usize = 0;
    pub const MESSAGE_TYPE: usize = 4;
    pub const SCHEMA_VERSION: usize = 36;
    pub const CREATED_DATE: usize = 40;
    pub const SEQUENCE_NUMBER: usize = 48;
    pub const FLAGS: usize = 56;
    pub const MESSAGE_ID: usize = 64;
    pub const PAYLOAD_DIGEST: usize = 80;
    pub const PAYLOAD_TYPE: usize = 112;
    pub const PAYLOAD_LENGTH: usize = 116;
    pub const PAYLOAD: usize = 120;
}

pub const MESSAGE_TYPE_LEN: usize = 32;
/// The HeaderLength the plugin and the agent write.
pub const HEADER_LENGTH: u32 = offset::PAYLOAD_LENGTH as u32;
/// The shortest message: a header and an empty payload.
pub const MIN_LEN: usize = offset::PAYLOAD;

/// Message types.
pub mod kind {
    pub const INPUT_STREAM_DATA: &str = "input_stream_data";
    pub const OUTPUT_STREAM_DATA: &str = "output_stream_data";
    pub const ACKNOWLEDGE: &str = "acknowledge";
    pub const CHANNEL_CLOSED: &str = "channel_closed";
    pub const START_PUBLICATION: &str = "start_publication";
    pub const PAUSE_PUBLICATION: &str = "pause_publication";
}

/// Payload types.
pub mod payload {
    pub const OUTPUT: u32 = 1;
    pub const ERROR: u32 = 2;
    pub const SIZE: u32 = 3;
    pub const PARAMETER: u32 = 4;
    pub const HANDSHAKE_REQUEST: u32 = 5;
    pub const HANDSHAKE_RESPONSE: u32 = 6;
    pub const HANDSHAKE_COMPLETE: u32 = 7;
    pub const ENC_CHALLENGE_REQUEST: u32 = 8;
    pub const ENC_CHALLENGE_RESPONSE: u32 = 9;
    pub const FLAG: u32 = 10;
    pub const STDERR: u32 = 11;
    pub const EXIT_CODE: u32 = 12;
}

/// Header flags.
pub mod flags {
    pub const SYN: u64 = 1;
    pub const FIN: u64 = 2;
    /// What acknowledgements carry.
    pub const ACK: u64 = SYN | FIN;
}

/// The 4-byte payloads of a [`payload::FLAG`] message (port sessions).
pub mod port_flag {
    /// Client → agent: the client's local connection closed; the agent closes its own and
    /// redials on the next data.
    pub const DISCONNECT_TO_PORT: u32 = 1;
    pub const TERMINATE_SESSION: u32 = 2;
    /// Agent → client: the agent could not connect to the port.
    pub const CONNECT_TO_PORT_ERROR: u32 = 3;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// Shorter than a header.
    TooShort(usize),
    /// A HeaderLength that would put the payload inside the header.
    BadHeaderLength(u32),
    /// The payload runs past the end of the message.
    Truncated {
        need: usize,
        have: usize,
    },
    MissingType,
    MissingDate,
    /// The payload does not match its SHA-256 digest.
    Digest,
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageError::TooShort(n) => write!(f, "a {n}-byte message is shorter than its header"),
            MessageError::BadHeaderLength(h) => write!(f, "header length {h} is too small"),
            MessageError::Truncated { need, have } => {
                write!(
                    f,
                    "the payload needs {need} bytes but the message has {have}"
                )
            }
            MessageError::MissingType => write!(f, "the message type is empty"),
            MessageError::MissingDate => write!(f, "the creation date is zero"),
            MessageError::Digest => write!(f, "the payload does not match its SHA-256 digest"),
        }
    }
}

impl std::error::Error for MessageError {}

/// A bounds-checked view of one message.
#[derive(Debug, Clone, Copy)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
    payload_start: usize,
    payload_end: usize,
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(x)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

impl<T: AsRef<[u8]>> Message<T> {
    /// A view of `buffer`, or why it is not a whole message. Checks the structure only;
    /// [`Message::validate`] checks the contents as the plugin does.
    pub fn new_checked(buffer: T) -> Result<Self, MessageError> {
        let b = buffer.as_ref();
        if b.len() < MIN_LEN {
            return Err(MessageError::TooShort(b.len()));
        }
        let hl = be_u32(b, offset::HEADER_LENGTH);
        if (hl as usize) < offset::PAYLOAD_LENGTH {
            return Err(MessageError::BadHeaderLength(hl));
        }
        let payload_start = (hl as usize).saturating_add(4);
        let payload_end = payload_start.saturating_add(be_u32(b, offset::PAYLOAD_LENGTH) as usize);
        if payload_end > b.len() {
            return Err(MessageError::Truncated {
                need: payload_end,
                have: b.len(),
            });
        }
        Ok(Message {
            buffer,
            payload_start,
            payload_end,
        })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn header_length(&self) -> u32 {
        be_u32(self.b(), offset::HEADER_LENGTH)
    }

    /// The type, NULs and spaces trimmed ("" if not UTF-8).
    pub fn message_type(&self) -> &str {
        let raw = &self.b()[offset::MESSAGE_TYPE..offset::MESSAGE_TYPE + MESSAGE_TYPE_LEN];
        let start = raw.iter().position(|&c| c != 0).unwrap_or(raw.len());
        let end = raw.iter().rposition(|&c| c != 0).map_or(start, |e| e + 1);
        std::str::from_utf8(&raw[start..end]).unwrap_or("").trim()
    }

    pub fn schema_version(&self) -> u32 {
        be_u32(self.b(), offset::SCHEMA_VERSION)
    }

    /// Unix milliseconds.
    pub fn created_date(&self) -> u64 {
        be_u64(self.b(), offset::CREATED_DATE)
    }

    pub fn sequence_number(&self) -> i64 {
        be_u64(self.b(), offset::SEQUENCE_NUMBER) as i64
    }

    pub fn flags(&self) -> u64 {
        be_u64(self.b(), offset::FLAGS)
    }

    /// The UUID's 16 bytes in their usual order (the halves swapped back).
    pub fn message_id(&self) -> [u8; 16] {
        let w = &self.b()[offset::MESSAGE_ID..offset::MESSAGE_ID + 16];
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&w[8..]);
        id[8..].copy_from_slice(&w[..8]);
        id
    }

    pub fn payload_digest(&self) -> &[u8] {
        &self.b()[offset::PAYLOAD_DIGEST..offset::PAYLOAD_DIGEST + 32]
    }

    pub fn payload_type(&self) -> u32 {
        be_u32(self.b(), offset::PAYLOAD_TYPE)
    }

    pub fn payload_length(&self) -> u32 {
        be_u32(self.b(), offset::PAYLOAD_LENGTH)
    }

    pub fn payload(&self) -> &[u8] {
        &self.b()[self.payload_start..self.payload_end]
    }

    /// The plugin's checks on receipt: none for (start|pause)_publication; otherwise a
    /// type, a creation date, and a matching digest when there is a payload.
    pub fn validate(&self) -> Result<(), MessageError> {
        let t = self.message_type();
        if t == kind::START_PUBLICATION || t == kind::PAUSE_PUBLICATION {
            return Ok(());
        }
        if t.is_empty() {
            return Err(MessageError::MissingType);
        }
        if self.created_date() == 0 {
            return Err(MessageError::MissingDate);
        }
        if self.payload_length() != 0
            && Sha256::digest(self.payload())[..] != *self.payload_digest()
        {
            return Err(MessageError::Digest);
        }
        Ok(())
    }
}

/// The fields of a message to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub message_type: &'a str,
    pub schema_version: u32,
    pub created_ms: u64,
    pub sequence_number: i64,
    pub flags: u64,
    /// In the usual UUID byte order; written with its halves swapped.
    pub message_id: [u8; 16],
    pub payload_type: u32,
}

/// Writes one message as the plugin does: HeaderLength 116, the type padded with spaces
/// (cut at 32 bytes), the digest of `payload`.
pub fn encode(h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(MIN_LEN + payload.len());
    v.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
    let mut t = [b' '; MESSAGE_TYPE_LEN];
    let n = h.message_type.len().min(MESSAGE_TYPE_LEN);
    t[..n].copy_from_slice(&h.message_type.as_bytes()[..n]);
    v.extend_from_slice(&t);
    v.extend_from_slice(&h.schema_version.to_be_bytes());
    v.extend_from_slice(&h.created_ms.to_be_bytes());
    v.extend_from_slice(&h.sequence_number.to_be_bytes());
    v.extend_from_slice(&h.flags.to_be_bytes());
    v.extend_from_slice(&h.message_id[8..]);
    v.extend_from_slice(&h.message_id[..8]);
    v.extend_from_slice(&Sha256::digest(payload));
    v.extend_from_slice(&h.payload_type.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A UUID's canonical text (lowercase, hyphenated), as the plugin prints message ids.
pub fn uuid_text(id: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*id).hyphenated().to_string()
}

/// A new random (version 4) message id.
pub fn new_id() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

/// Now in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
}

/// An acknowledgement of `acked` (sequence number 0, flags 3, payload type 0).
pub fn encode_ack<T: AsRef<[u8]>>(acked: &Message<T>, id: [u8; 16], created_ms: u64) -> Vec<u8> {
    let content = AcknowledgeContent {
        message_type: acked.message_type().to_string(),
        message_id: uuid_text(&acked.message_id()),
        sequence_number: acked.sequence_number(),
        is_sequential_message: true,
    };
    let body = serde_json::to_vec(&content).unwrap_or_default();
    encode(
        &Header {
            message_type: kind::ACKNOWLEDGE,
            schema_version: 1,
            created_ms,
            sequence_number: 0,
            flags: flags::ACK,
            message_id: id,
            payload_type: 0,
        },
        &body,
    )
}

/// A flag payload.
pub fn flag_payload(flag: u32) -> [u8; 4] {
    flag.to_be_bytes()
}

/// A flag payload's value, `None` unless 4 bytes.
pub fn parse_flag(payload: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(payload).ok().map(u32::from_be_bytes)
}

/// Payload of an `acknowledge` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcknowledgeContent {
    #[serde(rename = "AcknowledgedMessageType", default)]
    pub message_type: String,
    #[serde(rename = "AcknowledgedMessageId", default)]
    pub message_id: String,
    #[serde(rename = "AcknowledgedMessageSequenceNumber")]
    pub sequence_number: i64,
    #[serde(rename = "IsSequentialMessage", default)]
    pub is_sequential_message: bool,
}

/// The first (text) WebSocket frame: the session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpenDataChannel {
    pub message_schema_version: String,
    pub request_id: String,
    pub token_value: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub client_version: String,
}

/// Agent → client, payload type 5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeRequest {
    #[serde(default)]
    pub agent_version: String,
    #[serde(default)]
    pub requested_client_actions: Vec<RequestedClientAction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestedClientAction {
    pub action_type: String,
    #[serde(default)]
    pub action_parameters: serde_json::Value,
}

/// Client → agent, payload type 6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeResponse {
    pub client_version: String,
    pub processed_client_actions: Vec<ProcessedClientAction>,
    /// `null` when empty, as Go writes a nil slice.
    pub errors: Option<Vec<String>>,
}

/// `ActionStatus` values.
pub mod action_status {
    pub const SUCCESS: u32 = 1;
    pub const FAILED: u32 = 2;
    pub const UNSUPPORTED: u32 = 3;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessedClientAction {
    pub action_type: String,
    pub action_status: u32,
    pub action_result: serde_json::Value,
    pub error: String,
}

/// Agent → client, payload type 7.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeComplete {
    /// Nanoseconds (a Go `time.Duration`).
    #[serde(default)]
    pub handshake_time_to_complete: i64,
    #[serde(default)]
    pub customer_message: String,
}

/// Payload of a `channel_closed` message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ChannelClosed {
    pub message_id: String,
    pub created_date: String,
    pub destination_id: String,
    pub session_id: String,
    pub message_type: String,
    pub schema_version: i64,
    pub output: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hex to bytes (test vectors are written out as text, independently of the encoder).
    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// An `input_stream_data` message with payload "hello", written out field by field
    /// from the offset table in the reference (§1.3).
    fn hello_vector() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(hex("00000074")); // 0: HeaderLength 116
        v.extend(b"input_stream_data"); // 4: MessageType, 17 bytes …
        v.extend([b' '; 15]); // … space-padded to 32
        v.extend(hex("00000001")); // 36: SchemaVersion 1
        v.extend(hex("0000018bcfe56800")); // 40: CreatedDate 1700000000000 ms
        v.extend(hex("0000000000000005")); // 48: SequenceNumber 5
        v.extend(hex("0000000000000001")); // 56: Flags SYN
                                           // 64: MessageId 00112233-4455-6677-8899-aabbccddeeff, least significant half first
        v.extend(hex("8899aabbccddeeff"));
        v.extend(hex("0011223344556677"));
        // 80: SHA-256("hello")
        v.extend(hex(
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        ));
        v.extend(hex("00000001")); // 112: PayloadType 1 (output)
        v.extend(hex("00000005")); // 116: PayloadLength 5
        v.extend(b"hello"); // 120: Payload
        v
    }

    const ID: [u8; 16] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];

    #[test]
    fn encodes_the_reference_layout_byte_for_byte() {
        let v = hello_vector();
        assert_eq!(v.len(), 125);
        let got = encode(
            &Header {
                message_type: kind::INPUT_STREAM_DATA,
                schema_version: 1,
                created_ms: 1_700_000_000_000,
                sequence_number: 5,
                flags: flags::SYN,
                message_id: ID,
                payload_type: payload::OUTPUT,
            },
            b"hello",
        );
        assert_eq!(got, v);
    }

    #[test]
    fn decodes_the_reference_layout() {
        let v = hello_vector();
        let m = Message::new_checked(&v[..]).unwrap();
        assert_eq!(m.header_length(), 116);
        assert_eq!(m.message_type(), "input_stream_data");
        assert_eq!(m.schema_version(), 1);
        assert_eq!(m.created_date(), 1_700_000_000_000);
        assert_eq!(m.sequence_number(), 5);
        assert_eq!(m.flags(), 1);
        assert_eq!(m.message_id(), ID);
        assert_eq!(
            uuid_text(&m.message_id()),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        assert_eq!(m.payload_type(), 1);
        assert_eq!(m.payload_length(), 5);
        assert_eq!(m.payload(), b"hello");
        assert_eq!(m.validate(), Ok(()));
    }

    #[test]
    fn honours_a_longer_header_and_nul_padding() {
        // HeaderLength 120: four more header bytes before PayloadLength's successor; the
        // type NUL-padded (the parser trims NULs, then spaces).
        let mut v = hello_vector();
        v[..4].copy_from_slice(&hex("00000078"));
        for b in &mut v[4 + 17..36] {
            *b = 0;
        }
        v.truncate(120);
        v.extend(hex("deadbeef")); // the extension
        v.extend(b"hello");
        let m = Message::new_checked(&v[..]).unwrap();
        assert_eq!(m.message_type(), "input_stream_data");
        assert_eq!(m.payload(), b"hello");
        assert_eq!(m.validate(), Ok(()));
    }

    #[test]
    fn refuses_short_truncated_and_forged_messages() {
        let v = hello_vector();
        for n in 0..v.len() {
            assert!(Message::new_checked(&v[..n]).is_err(), "prefix {n}");
        }
        let mut bad = v.clone();
        bad[..4].copy_from_slice(&hex("00000010"));
        assert_eq!(
            Message::new_checked(&bad[..]).unwrap_err(),
            MessageError::BadHeaderLength(16)
        );
        let mut bad = v.clone();
        bad[120] ^= 1;
        assert_eq!(
            Message::new_checked(&bad[..]).unwrap().validate(),
            Err(MessageError::Digest)
        );
        let mut bad = v.clone();
        bad[40..48].fill(0);
        assert_eq!(
            Message::new_checked(&bad[..]).unwrap().validate(),
            Err(MessageError::MissingDate)
        );
        // start_publication is not validated (the gateway sends it without date or digest).
        let mut p = [0u8; 120];
        p[..4].copy_from_slice(&hex("00000074"));
        p[4..4 + 17].copy_from_slice(b"start_publication");
        assert_eq!(Message::new_checked(&p[..]).unwrap().validate(), Ok(()));
    }

    #[test]
    fn acknowledgement_layout_and_json() {
        let v = hello_vector();
        let m = Message::new_checked(&v[..]).unwrap();
        let ack = encode_ack(&m, [7; 16], 1_700_000_000_001);
        assert_eq!(&ack[..4], &hex("00000074")[..]);
        assert_eq!(&ack[4..36], b"acknowledge                     ");
        assert_eq!(&ack[48..56], &[0; 8]); // sequence number 0
        assert_eq!(&ack[56..64], &hex("0000000000000003")[..]); // flags 3
        assert_eq!(&ack[112..116], &[0; 4]); // payload type 0
        let a = Message::new_checked(&ack[..]).unwrap();
        assert_eq!(a.validate(), Ok(()));
        let json: serde_json::Value = serde_json::from_slice(a.payload()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "AcknowledgedMessageType": "input_stream_data",
                "AcknowledgedMessageId": "00112233-4455-6677-8899-aabbccddeeff",
                "AcknowledgedMessageSequenceNumber": 5,
                "IsSequentialMessage": true,
            })
        );
    }

    #[test]
    fn handshake_json_as_the_agent_and_plugin_write_it() {
        // The agent's request (datachannel.go buildHandshakeRequestPayload).
        let req: HandshakeRequest = serde_json::from_str(
            r#"{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType",
            "ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"4790","type":"LocalPortForwarding"}}}]}"#,
        )
        .unwrap();
        assert_eq!(req.agent_version, "3.3.987.0");
        assert_eq!(
            req.requested_client_actions[0].action_parameters["SessionType"],
            "Port"
        );
        let resp = HandshakeResponse {
            client_version: "1.0.0".into(),
            processed_client_actions: vec![ProcessedClientAction {
                action_type: "SessionType".into(),
                action_status: action_status::SUCCESS,
                action_result: serde_json::Value::Null,
                error: String::new(),
            }],
            errors: None,
        };
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            r#"{"ClientVersion":"1.0.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
        );
        let done: HandshakeComplete =
            serde_json::from_str(r#"{"HandshakeTimeToComplete":1500000,"CustomerMessage":""}"#)
                .unwrap();
        assert_eq!(done.handshake_time_to_complete, 1_500_000);
        let closed: ChannelClosed = serde_json::from_str(
            r#"{"MessageType":"channel_closed","Output":"bye","SchemaVersion":1}"#,
        )
        .unwrap();
        assert_eq!(closed.output, "bye");
        assert_eq!(
            parse_flag(&flag_payload(port_flag::CONNECT_TO_PORT_ERROR)),
            Some(3)
        );
        assert_eq!(flag_payload(1), [0, 0, 0, 1]);
        assert_eq!(parse_flag(b"xx"), None);
    }

    proptest! {
        #[test]
        fn round_trips(seq in any::<i64>(), fl in any::<u64>(), id in any::<[u8; 16]>(),
                       pt in any::<u32>(), created in 1u64.., body in proptest::collection::vec(any::<u8>(), 0..2000),
                       t in "[a-z_]{1,32}") {
            let h = Header { message_type: &t, schema_version: 1, created_ms: created,
                             sequence_number: seq, flags: fl, message_id: id, payload_type: pt };
            let v = encode(&h, &body);
            let m = Message::new_checked(&v[..]).unwrap();
            prop_assert_eq!(m.message_type(), t.as_str());
            prop_assert_eq!(m.sequence_number(), seq);
            prop_assert_eq!(m.flags(), fl);
            prop_assert_eq!(m.message_id(), id);
            prop_assert_eq!(m.payload_type(), pt);
            prop_assert_eq!(m.payload(), &body[..]);
            prop_assert_eq!(m.validate(), Ok(()));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(m) = Message::new_checked(&bytes[..]) {
                let _ = (m.message_type(), m.message_id(), m.payload(), m.validate());
            }
        }
    }
}
