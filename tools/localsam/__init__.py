"""Local stand-in for the SAM CLI's local commands, driven by ``template.yaml`` (no Docker needed)."""
