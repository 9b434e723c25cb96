"""The HTTP side: the route table (``routes``) and the OpenAPI document generated from it
(``openapi``), the resolver, route binding and error mapping (``http``, on ``powertools``), request
and response structs (``requests``, ``models``), views, the usage-page reports, the page's static
files (``static``). Only the HTTP functions import it."""
