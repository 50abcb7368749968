"""The twin's command-line tools: so101-twin-record and so101-camera-align."""
