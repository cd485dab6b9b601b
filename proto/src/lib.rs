//! The gRPC contracts between the services, generated from `proto/`.

/// `iceconfig.v1`: TURN credentials and ICE configurations.
pub mod iceconfig {
    pub mod v1 {
        tonic::include_proto!("iceconfig.v1");
    }
}

/// `signaling.v1`: presence and call routing.
pub mod signaling {
    pub mod v1 {
        tonic::include_proto!("signaling.v1");
    }
}

/// Encoded `FileDescriptorSet` of every package here, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("descriptor");

impl signaling::v1::Reason {
    /// The machine-readable name browsers see: the wire name without `REASON_`, in lower case
    /// (`REASON_NAME_TAKEN` → `name_taken`); derived, so a new reason needs no table.
    pub fn text(self) -> &'static str {
        static TEXTS: std::sync::OnceLock<Vec<(i32, &'static str)>> = std::sync::OnceLock::new();
        let texts = TEXTS.get_or_init(|| {
            (0..=i32::from(u8::MAX))
                .filter_map(|value| Self::try_from(value).ok())
                .map(|reason| {
                    let name = reason.as_str_name();
                    let text = name.strip_prefix("REASON_").unwrap_or(name).to_lowercase();
                    (reason as i32, &*Box::leak(text.into_boxed_str()))
                })
                .collect()
        });
        texts
            .iter()
            .find(|(value, _)| *value == self as i32)
            .map_or("unspecified", |(_, text)| text)
    }
}

#[cfg(test)]
mod tests {
    use super::signaling::v1::Reason;

    #[test]
    fn reason_texts_follow_the_wire_names() {
        assert_eq!(Reason::NameTaken.text(), "name_taken");
        assert_eq!(Reason::PeerDisconnected.text(), "peer_disconnected");
        assert_eq!(Reason::Unspecified.text(), "unspecified");
    }
}
