<%@ page contentType="application/json; charset=UTF-8" session="false" import="java.util.*" %><%
@SuppressWarnings("unchecked")
List<String> handled = (List<String>) application.getAttribute("handled");
out.print("[");
if (handled != null) { synchronized (handled) { out.print(String.join(",", handled)); } }
out.print("]");
%>
