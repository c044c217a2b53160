"""The Flower App of fedsered: ClientApp and ServerApp adapters and the Ray simulation runner."""
