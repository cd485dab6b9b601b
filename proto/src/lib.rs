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
