<%@ page contentType="text/html; charset=UTF-8" session="false" import="java.util.*" %><%
// GET /docs/{id}/edit and POST /docs/{id}/save: the id parsed with Integer.parseInt, as a
// hand-written servlet router does; every run is recorded for GET /handled, with the request
// URI as sent (before Tomcat decodes it and strips `;` parameters) as its path.
String[] parts = request.getPathInfo() == null ? new String[0] : request.getPathInfo().split("/", -1);
Integer id = null;
if (parts.length == 3 && parts[0].isEmpty()) {
  try { id = Integer.parseInt(parts[1]); } catch (NumberFormatException e) { id = null; }
}
String handler = null;
if (id != null && parts[2].equals("edit") && request.getMethod().equals("GET")) handler = "edit";
if (id != null && parts[2].equals("save") && request.getMethod().equals("POST")) handler = "save";
if (handler == null) { response.sendError(404); return; }
@SuppressWarnings("unchecked")
List<String> handled = (List<String>) application.getAttribute("handled");
if (handled == null) {
  synchronized (application) {
    handled = (List<String>) application.getAttribute("handled");
    if (handled == null) {
      handled = Collections.synchronizedList(new ArrayList<String>());
      application.setAttribute("handled", handled);
    }
  }
}
handled.add("{\"handler\":" + json(handler)
    + ",\"id\":" + id
    + ",\"user\":" + json(request.getHeader("X-Latch-User"))
    + ",\"probe\":" + json(request.getHeader("X-Diff-Probe"))
    + ",\"path\":" + json(request.getRequestURI()) + "}");
%><%!
static String json(String s) {
  return s == null ? "null" : "\"" + org.apache.tomcat.util.json.JSONFilter.escape(s) + "\"";
}
%><html><head><title>doc</title></head><body><%= handler %> <%= id %></body></html>
