"""Effects: what decisions' commands do to the store, AMI and MQTT."""
