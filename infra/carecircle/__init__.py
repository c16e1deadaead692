"""CareCircle infrastructure: settings, components, rendering and the offline harness."""
