from twisted.application.service import ServiceMaker

webproxy = ServiceMaker(
    "webproxy",
    "proxyapp.tap",
    "A strict, streaming HTTP/1.1 forward proxy.",
    "webproxy",
)
