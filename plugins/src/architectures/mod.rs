//! Network architectures, registered under dynamic_network_architectures' class names.
