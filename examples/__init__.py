"""Built-in example images, assembled from Debian packages by Kiln itself."""
