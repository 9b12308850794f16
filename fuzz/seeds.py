#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/ (run from anywhere; rewrites them).

Seeds are real gateway answers and inputs in the layouts the harnesses read;
see fuzz/README.md for the layouts."""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
BOM = b'\xef\xbb\xbf'


def w(h, name, data):
    os.makedirs(os.path.join(HERE, 'corpus', h), exist_ok=True)
    with open(os.path.join(HERE, 'corpus', h, name), 'wb') as f:
        f.write(data)


shutil.rmtree(os.path.join(HERE, 'corpus'), ignore_errors=True)

# ---- parse: whole input is the answer body
refusals = ["Неправильный логин или пароль", "Ваш аккаунт заблокирован",
            "Данное направление закрыто для Вас", "Нет отправителя",
            "Нет текста сообщения", "Такого отправителя нет",
            "Укажите номер телефона", "Flood SMS",
            "Сообщение с таким ID не принималось"]
for i, r in enumerate(refusals):
    b = r.encode()
    w('parse', f'refusal{i}', b)
    w('parse', f'refusal{i}_bom_dot_crlf', BOM + b + b'.\r\n')
    w('parse', f'refusal{i}_upper_dot', r.upper().encode() + b'.')
w('parse', 'refusal2_dlya_vas', "Данное направление закрыто для вас".encode())
w('parse', 'refusal4_spaces', "  Нет   текста\tсообщения .\n".encode())
send = [b'1000000001', b'1000000001,1000000002',
        b'1000000001, 1000000002\r\n',
        b'1000000001\n1000000002\n1000000003\n',
        BOM + b'1000000001,1000000002', b'\r\n 1000000001 \r\n',
        b'12345678901234567890123456789012',
        b'123456789012345678901234567890123', b'1,,2', b'1000000001,',
        b',1', b'1000000001;1000000002', b'']
for i, s in enumerate(send):
    w('parse', f'send{i}', s)
status = [b'deliver', b'deliver 2026-01-01 10:00:00',
          b'not_deliver 2026-01-01 10:00:00\r\n', b'expired', b'send',
          b'read 2026-01-01 10:00:00', b'partly_deliver', BOM + b'send\n',
          b'Deliver', b'queued 2026-01-01',
          b'deliver\t2026-01-01 10:00:00\nmore', b'a' * 64, b'deliver2026',
          # a state only for a single word (+ time): none of these is one
          b'deliver\n<html>', b'deliver \x00<html>',
          b'deliver 2024-01-01\x00; DROP', b'deliver\x00', b'send\r\nsend',
          b'deliver 2024-01-01T10:00:00+03:00', b'deliver 2024-01-01 <b>']
for i, s in enumerate(status):
    w('parse', f'status{i}', s)
balance = [b'1024.50', b'100,01', b'100,01 RUR', b'100.01 RUR\n',
           BOM + b'  1024.50  \r\n', b'-5.20 RUR', b'0', b'100.',
           b'100,01RUR', '100,01 руб.'.encode(), b'100.01 $', b'1e5', b'-',
           b'9' * 200,
           # one line of UTF-8 without control bytes: none of these is one
           b'100.01\n<html>', b'100.01 RUR\x00junk', b'100,01\r\nRUR',
           b'100.01 RUR\x1b[0m', b'100.01 \xd1']
for i, s in enumerate(balance):
    w('parse', f'balance{i}', s)
w('parse', 'html', b'<html><body>502 Bad Gateway</body></html>')
w('parse', 'binary', bytes(range(256)))
w('parse', 'bad_utf8', b'\xd0\x9d\xd0\xb5\xd1')

# ---- encode: whole input is the value
for i, s in enumerate([b'', b'hello', b'Hello, world!',
                       "Привет, мир".encode(), b'a b+c&d=e%f', b'-._~',
                       bytes(range(256)), b'\x00\x00', "€ 😀".encode()]):
    w('encode', f'e{i}', s)

# ---- phone: whole input is one number; 0xFF-separated lists for add
for i, s in enumerate([b'+7 (903) 123-45-67', b'79031234567', b'+79031234567',
                       b'8 903 123 45 67', b'79031234567,79037654321',
                       b'+7 (903) 123-45-67, +7 (903) 765-43-21',
                       b'123456789', b'1234567890123456', b'123456789012345',
                       b'7903123456x', b'79031234567,', b',79031234567',
                       b'79031234567\xff+7 903 765 43 21,79031112233\xffbad',
                       b'\t7903\t1234567', b'', b'+-()']):
    w('phone', f'p{i}', s)


# ---- validate: text 0xFF sentence 0xFF message 0xFF secret 0xFF cap(u16)
def vf(text, b, msg, secret, cap=None):
    d = b'\xff'.join([text, b, msg, secret]) + b'\xff'
    if cap is not None:
        d += struct.pack('>H', cap)
    return d


for i, s in enumerate([
        vf(b'MyShop', b'myshop',
           b'auth failed for https://gw/get/?user=u&pwd=s3cr%20t', b's3cr t',
           511),
        vf(b'79031234567', b'79031234567.', b'pwd=hunter2&x=hunter2',
           b'hunter2', 19),
        vf("Привет, мир".encode(), "ПРИВЕТ,   МИР.".encode(),
           b'nothing here', b'pw', 63),
        vf('Нет отправителя'.encode(), BOM + 'нет отправителя.'.encode(),
           b'p@ss p%40ss', b'p@ss', 7),
        vf(b'a' * 161, b'a' * 160, b'x' * 700, b'xx', 598),
        vf(('Ж' * 71).encode(), ('ж' * 71).encode(), b'', b'', 4),
        vf(b'Hello {world} ~ \xe2\x82\xac', b'', b'abc', b'b', 511),
        vf(b'\xf0\x9f\x98\x80' * 35, b'\xed\xa0\x80', b'\xc0\xaf', b'\xc0',
           99),
        vf(b'12345678901234567890123456789012', b'1234567890123456', b'',
           b''),
        vf(b'Too-Long.Sender', b'', b'', b''),
        vf(b'', b'', b'', b''),
        vf(b'\x00text', b'\xe0\x80\x80', b'\xf4\x90\x80\x80',
           b'\xef\xbf\xbf')]):
    w('validate', f'v{i}', s)


# ---- split: max_url(u16) flags(u8) nrec(u16) seed(u16), then user, pwd,
# sender, text, callback_url, name, base tail (0xFF-separated), then bytes
# for extra recipients (a length byte, then one byte per digit).
def sp(max_url, flags, nrec, seed, fields, extra=b''):
    return (struct.pack('>HBHH', max_url, flags, nrec, seed) +
            b'\xff'.join(fields) + b'\xff' + extra)


for i, s in enumerate([
        sp(1800, 8, 3, 1, [b'login', b'p@ss word', b'MyShop',
                           "Привет, мир!".encode(), b'', b'', b'']),
        sp(0, 8 | 16 | 32, 1000, 7,
           [b'login', b'secret', b'MyShop', b'Hello ' * 50,
            b'https://example.com/cb?x=1', b'Mailing 1', b'']),
        sp(3800, 1, 1200, 99, [b'u', b'p', b'', b'x', b'', b'', b'/extra?']),
        sp(100, 2, 50, 3, [b'u' * 300, b'p' * 300, b'S', b'Long text ' * 100,
                           b'', b'', b'']),
        sp(1000, 3, 0, 0, [b'user', b'pw', b'', b'', b'', b'', b'&k=v'],
           b'\x05' + b'79031234567' + b'\x00' + b'1234567890'),
        sp(2, 4, 20, 5, [b'a', b'b', b'c', b'\x00\x01\x02', b'', b'', b''])]):
    w('split', f's{i}', s)


# ---- http: max_body selector (u8), split seed (u8), flags (u8: 1 = the
# server closes after the payload, 2 = the payload is URL 0xFF User-Agent),
# then the payload.
def hr(payload, max_sel=199, seed=1, eof=False):
    return bytes([max_sel, seed, 1 if eof else 0]) + payload


def hu(url, ua=None, seed=1):
    return bytes([0, seed, 2]) + url + (b'\xff' + ua if ua is not None else b'')


OK = b'HTTP/1.1 200 OK\r\n'
CHUNKED = OK + b'Transfer-Encoding: chunked\r\n\r\n'
for i, (payload, max_sel, eof) in enumerate([
        (OK + b'Content-Length: 10\r\nContent-Type: text/plain\r\n\r\n'
         b'1000000001', 199, False),
        (CHUNKED + b'5;name=value\r\nhello\r\n6 ; a="b c"\r\n world\r\n'
         b'0\r\nX-Checksum: abc\r\n\r\n', 199, False),
        (OK + b'\r\ndeliver 2026-01-01 10:00:00', 199, True),
        (b'HTTP/1.1 204 No Content\r\n\r\n', 199, False),
        (b'HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n', 199,
         False),
        (b'HTTP/1.1 100 Continue\r\n\r\n' + OK +
         b'Content-Length: 2\r\n\r\nok', 199, False),
        (b'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2'
         b'\r\n\r\nok', 199, False),
        (OK + b'Connection: close\r\nContent-Length: 2\r\n\r\nok', 199, False),
        (OK + b'Content-Length: 2\r\nContent-Length: 3\r\n\r\nok', 199, False),
        (OK + b'Content-Length: 11\r\n\r\n0123456789A', 10, False),
        (OK + b'\r\n0123456789A', 10, True),
        (OK + b'X-Pad: ' + b'a' * 16400 + b'\r\n\r\n', 199, False),
        (b'SSH-2.0-OpenSSH_9.2\r\n', 199, False),
        (OK + b'Content-Length: 3\r\n\r\noneHTTP/1.1 200 OK\r\n'
         b'Content-Length: 3\r\n\r\ntwo', 199, False),
        (OK + b'Content-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n'
         b'2\r\nok\r\n0\r\n\r\n', 199, False),
        (b'HTTP/1.1 101 Switching Protocols\r\n\r\n', 199, False),
        (b'HTTP/1.0 502 Bad Gateway\nContent-Length: 5\n\nerror', 199,
         False),
        (CHUNKED + b'3\r\nabc\r\n', 199, True),
        (OK + b'Transfer-Encoding: gzip\r\n\r\n', 199, False),
        (CHUNKED + b'ffffffffffffffffffff\r\n', 255, False),
        ('HTTP/1.1 200 OK\r\nContent-Length: 29\r\n\r\n'
         'Нет отправителя'.encode(), 199, False)]):
    w('http', f'r{i}', hr(payload, max_sel, seed=i * 37 % 256, eof=eof))
for i, (url, ua) in enumerate([
        (b'https://gateway.api.sc/get/?user=u&pwd=p', b'streamtelecom/0.1.0'),
        (b'http://127.0.0.1:8080/get/', None),
        (b'HTTPS://[::1]:8443/a%20b?x=1#frag', b'a\tb'),
        (b'http://example.com?x=1', b''),
        (b'http://user:pw@example.com/', None),
        (b'http://h:65536/', None),
        (b'http://h/\r\nX: y', None),
        (b'https://[2001:db8::1]', b'evil\r\nX-Injected: 1'),
        (b'ftp://example.com/', None),
        (b'http://h:80/', b'ua')]):
    w('http', f'u{i}', hu(url, ua, seed=i))
