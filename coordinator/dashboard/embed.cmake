# embed.cmake - turns the dashboard page into a C array the coordinator serves, so the
# binary needs no files at run time. Run by coordinator/CMakeLists.txt:
#   cmake -DIN=index.html -DOUT=dashboard_html.c -P embed.cmake
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){32})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}"
  "/* dashboard_html.c - generated from coordinator/dashboard/index.html by embed.cmake: do not edit. */\n"
  "#include <stddef.h>\n"
  "const unsigned char http_dashboard_html[] = {\n${bytes}0};\n"
  "const size_t http_dashboard_html_len = sizeof http_dashboard_html - 1;\n")
