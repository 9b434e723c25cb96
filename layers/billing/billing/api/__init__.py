"""The HTTP side: the resolver and error mapping, request and response models, views, the
usage-page reports. Only the HTTP functions import it."""
